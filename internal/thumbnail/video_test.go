package thumbnail_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/parleychat/parley/internal/mediatest"

	"github.com/parleychat/parley/internal/thumbnail"
)

func TestVideoWithoutFFmpeg(t *testing.T) {
	notFound := func(file string) (string, error) {
		return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
	}
	_, _, _, err := thumbnail.FFmpeg{LookPath: notFound}.Poster(t.Context(), "clip.mp4", 0)
	if !errors.Is(err, thumbnail.ErrNoFFmpeg) || !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("Poster: %v, want ErrNoFFmpeg wrapping exec.ErrNotFound", err)
	}
}

// TestVideoFakeFFmpeg runs Poster against shell scripts standing in for
// ffmpeg, to check the plumbing around it on hosts without ffmpeg.
func TestVideoFakeFFmpeg(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs a POSIX shell")
	}
	dir := t.TempDir()
	frame := filepath.Join(dir, "frame.png")
	if err := os.WriteFile(frame, mediatest.PNG(t, mediatest.Quadrants(640, 360)), 0o600); err != nil {
		t.Fatal(err)
	}
	argsFile := filepath.Join(dir, "args")
	record := `printf '%s\n' "$@" >> '` + argsFile + "'\n"

	tests := []struct {
		name      string
		script    string
		want      error
		wantRuns  int
		wantW     int
		wantH     int
		wantInArg []string
	}{
		{"frame at one second", "cat '" + frame + "'", nil, 1, 320, 180,
			[]string{"-ss\n1\n", "-i\nfile:" + filepath.Join(dir, "-odd:name.mp4") + "\n", "-protocol_whitelist\nfile\n", "scale='min(iw,320)':'min(ih,320)'"}},
		{"video shorter than a second", `case "$*" in *"-ss 1 "*) exit 0;; esac; cat '` + frame + "'", nil, 2, 320, 180,
			[]string{"-ss\n0\n"}},
		{"unreadable video", "echo 'moov atom not found' >&2; exit 1", thumbnail.ErrBadVideo, 1, 0, 0, nil},
		{"no frame at all", "exit 0", thumbnail.ErrBadVideo, 2, 0, 0, nil},
		{"output not an image", "echo garbage", thumbnail.ErrBadImage, 1, 0, 0, nil},
		{"output too large", "head -c 17000000 /dev/zero", thumbnail.ErrBadVideo, 1, 0, 0, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(argsFile)
			bin := filepath.Join(dir, "ffmpeg"+string(rune('a'+i)))
			if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+record+tt.script+"\n"), 0o700); err != nil {
				t.Fatal(err)
			}
			f := thumbnail.FFmpeg{LookPath: func(string) (string, error) { return bin, nil }}
			thumb, w, h, err := f.Poster(t.Context(), filepath.Join(dir, "-odd:name.mp4"), 320)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Poster: %v, want %v", err, tt.want)
			}
			args, _ := os.ReadFile(argsFile)
			if runs := strings.Count(string(args), "-nostdin\n"); runs != tt.wantRuns {
				t.Errorf("ffmpeg ran %d times, want %d", runs, tt.wantRuns)
			}
			for _, a := range tt.wantInArg {
				if !strings.Contains(string(args), a) {
					t.Errorf("arguments lack %q:\n%s", a, args)
				}
			}
			if tt.want == nil {
				if w != tt.wantW || h != tt.wantH {
					t.Errorf("size %dx%d, want %dx%d", w, h, tt.wantW, tt.wantH)
				}
				decodeThumb(t, thumb)
			}
		})
	}
}

func TestVideoCancelled(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs a POSIX shell")
	}
	bin := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 60\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f := thumbnail.FFmpeg{LookPath: func(string) (string, error) { return bin, nil }}
	if _, _, _, err := f.Poster(ctx, "clip.mp4", 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Poster: %v, want context.Canceled", err)
	}
}

// TestVideoRealFFmpeg runs only where ffmpeg is installed.
func TestVideoRealFFmpeg(t *testing.T) {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not installed")
	}
	dir := t.TempDir()
	tests := []struct {
		name     string
		duration string
		size     string
		wantW    int
		wantH    int
	}{
		{"two seconds", "2", "640x360", 320, 180},
		{"half a second, portrait", "0.5", "180x320", 180, 320},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clip := filepath.Join(dir, tt.name+".mp4")
			out, err := exec.CommandContext(t.Context(), bin, "-nostdin", "-loglevel", "error",
				"-f", "lavfi", "-i", "testsrc=size="+tt.size+":rate=10", "-t", tt.duration,
				"-c:v", "mpeg4", "-y", clip).CombinedOutput()
			if err != nil {
				t.Fatalf("make test video: %v: %s", err, out)
			}
			thumb, w, h, err := thumbnail.FFmpeg{}.Poster(t.Context(), clip, 320)
			if err != nil {
				t.Fatalf("Video: %v", err)
			}
			if w != tt.wantW || h != tt.wantH {
				t.Errorf("size %dx%d, want %dx%d", w, h, tt.wantW, tt.wantH)
			}
			decodeThumb(t, thumb)
		})
	}
}
