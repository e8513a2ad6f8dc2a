package thumbnail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Video errors. ErrNoFFmpeg means the feature is unavailable on this host:
// log it and skip. ErrBadVideo means ffmpeg could not read the file: drop it.
var (
	ErrNoFFmpeg = errors.New("thumbnail: ffmpeg not found")
	ErrBadVideo = errors.New("thumbnail: bad video")
)

// DefaultVideoTimeout bounds one ffmpeg run unless ctx ends sooner.
const DefaultVideoTimeout = 30 * time.Second

// maxFrameBytes caps ffmpeg's output: a PNG of at most 320×320 or so.
const maxFrameBytes = 16 << 20

// FFmpeg extracts video poster frames with the ffmpeg binary. The zero value
// is ready to use.
type FFmpeg struct {
	// LookPath finds the binary; nil means exec.LookPath.
	LookPath func(file string) (string, error)
	// Timeout bounds one extraction; 0 means DefaultVideoTimeout.
	Timeout time.Duration
	// Limits apply to the extracted frame.
	Limits Limits
}

// Poster returns a JPEG of the frame one second into the video at path (the
// first frame if the video is shorter), no larger than maxSide on its
// longest side, turned upright per the video's rotation metadata.
//
// It takes a file rather than a stream because an MP4's index often sits at
// its end, which ffmpeg can only reach by seeking.
func (f FFmpeg) Poster(ctx context.Context, path string, maxSide int) (thumb []byte, width, height int, err error) {
	lookPath := f.LookPath
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	bin, err := lookPath("ffmpeg")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%w: %w", ErrNoFFmpeg, err)
	}
	if maxSide <= 0 {
		maxSide = DefaultMaxSide
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("thumbnail: video path: %w", err)
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultVideoTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	frame, err := runFFmpeg(ctx, bin, abs, maxSide, "1")
	if err == nil && len(frame) == 0 {
		// Nothing at one second: the video is shorter than that.
		frame, err = runFFmpeg(ctx, bin, abs, maxSide, "0")
	}
	if err != nil {
		return nil, 0, 0, err
	}
	if len(frame) == 0 {
		return nil, 0, 0, fmt.Errorf("%w: no video frame", ErrBadVideo)
	}
	return Image(ctx, bytes.NewReader(frame), maxSide, f.Limits)
}

// runFFmpeg writes one scaled frame at offset seconds to stdout as PNG;
// the JPEG encoding happens in Image so that all thumbnails look alike.
func runFFmpeg(ctx context.Context, bin, path string, maxSide int, offset string) ([]byte, error) {
	side := strconv.Itoa(maxSide)
	cmd := exec.CommandContext(ctx, bin,
		"-nostdin", "-hide_banner", "-loglevel", "error",
		// The input may only be the local file, never a URL it refers to.
		"-protocol_whitelist", "file",
		"-ss", offset,
		"-i", "file:"+path, // "file:" keeps names with ':' or a leading '-' literal
		"-frames:v", "1",
		"-vf", "scale='min(iw,"+side+")':'min(ih,"+side+")':force_original_aspect_ratio=decrease",
		"-f", "image2pipe", "-c:v", "png", "pipe:1",
	)
	stdout := &limitedBuffer{max: maxFrameBytes}
	stderr := &limitedBuffer{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A killed ffmpeg's children could hold the pipes open; don't wait on them.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, fmt.Errorf("thumbnail: ffmpeg: %w", ctxErr)
	}
	if stdout.overflow {
		return nil, fmt.Errorf("%w: frame over %d bytes", ErrBadVideo, maxFrameBytes)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return nil, fmt.Errorf("%w: ffmpeg: %v: %s", ErrBadVideo, err, msg)
		}
		return nil, fmt.Errorf("thumbnail: run ffmpeg: %w", err)
	}
	return stdout.Bytes(), nil
}

// limitedBuffer keeps the first max bytes written and drops the rest,
// without failing the writer. The buffer is a named field, not embedded, so
// that io.Copy cannot bypass Write through bytes.Buffer's ReadFrom.
type limitedBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.overflow = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *limitedBuffer) String() string { return b.buf.String() }
