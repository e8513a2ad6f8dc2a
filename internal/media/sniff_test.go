package media_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/mediatest"

	"github.com/parleychat/parley/internal/media"
)

func TestSniff(t *testing.T) {
	tests := []struct {
		name     string
		head     []byte
		wantKind media.Kind
		wantMIME string
		wantExt  string
	}{
		{"jpeg", jpegFile(t, 4, 4), media.KindImage, "image/jpeg", "jpg"},
		{"png", pngFile(t, 4, 4), media.KindImage, "image/png", "png"},
		{"gif", gifFile(t, 4, 4), media.KindImage, "image/gif", "gif"},
		{"webp", riff("WEBP", "VP8L", 10), media.KindImage, "image/webp", "webp"},
		{"heic", ftyp("heic", "mif1", "heic"), media.KindImage, "image/heic", "heic"},
		{"heif", ftyp("mif1", "mif1"), media.KindImage, "image/heif", "heif"},
		{"mp4 isom", ftyp("isom", "isom", "iso2", "avc1", "mp41"), media.KindVideo, "video/mp4", "mp4"},
		{"mp4 mp42", ftyp("mp42", "mp41"), media.KindVideo, "video/mp4", "mp4"},
		{"m4v", ftyp("M4V ", "M4V ", "M4A ", "mp42"), media.KindVideo, "video/mp4", "mp4"},
		{"quicktime", ftyp("qt  ", "qt  "), media.KindVideo, "video/quicktime", "mov"},
		{"unknown major, known compatible brand", ftyp("zzzz", "mp42"), media.KindVideo, "video/mp4", "mp4"},
		{"3gp", ftyp("3gp5", "3gp5", "isom"), media.KindVideo, "video/3gpp", "3gp"},
		{"webm", webmHead("webm"), media.KindVideo, "video/webm", "webm"},
		{"m4a", ftyp("M4A ", "M4A ", "mp42", "isom"), media.KindAudio, "audio/mp4", "m4a"},
		{"mp3 with id3", mp3File(3, true, 0), media.KindAudio, "audio/mpeg", "mp3"},
		{"mp3 frames only", mp3File(3, false, 0), media.KindAudio, "audio/mpeg", "mp3"},
		{"aac adts", []byte{0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC}, media.KindAudio, "audio/aac", "aac"},
		{"aac adts after id3", append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), 0xFF, 0xF1, 0x50, 0x80), media.KindAudio, "audio/aac", "aac"},
		{"ogg opus", opusFile(312, 48000), media.KindAudio, "audio/ogg", "ogg"},
		{"ogg vorbis", oggPage(1, 0, 0, 2, []byte("\x01vorbis\x00\x00\x00\x00\x01\x44\xac\x00\x00")), media.KindAudio, "audio/ogg", "ogg"},
		{"wav", mediatest.WAV(8000, 10), media.KindAudio, "audio/wav", "wav"},
		{"amr", []byte("#!AMR\n\x3c"), media.KindAudio, "audio/amr", "amr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := tt.head[:min(len(tt.head), media.SniffLen)]
			kind, mime, ext, err := media.Sniff(head)
			if err != nil || kind != tt.wantKind || mime != tt.wantMIME || ext != tt.wantExt {
				t.Errorf("Sniff = %s %s %s %v, want %s %s %s", kind, mime, ext, err, tt.wantKind, tt.wantMIME, tt.wantExt)
			}
		})
	}
}

func TestSniffRefuses(t *testing.T) {
	tests := []struct {
		name string
		head []byte
	}{
		{"empty", nil},
		{"text", []byte("hello, world")},
		{"html", []byte("<!DOCTYPE html><html><body>")},
		{"svg", []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>`)},
		{"pdf", []byte("%PDF-1.7\n")},
		{"zip", []byte("PK\x03\x04\x14\x00")},
		{"elf", []byte("\x7fELF\x02\x01\x01")},
		{"avi", riff("AVI ", "LIST", 10)},
		{"avif", ftyp("avif", "avif", "mif1", "miaf")},
		{"unknown iso brand", ftyp("crx ", "crx ")},
		{"matroska", webmHead("matroska")},
		{"ogg theora", oggPage(1, 0, 0, 2, []byte("\x80theora"))},
		{"mpeg layer ii", []byte{0xFF, 0xFD, 0x90, 0x44}},
		{"one mp3 frame header, then junk", append([]byte{0xFF, 0xFB, 0x90, 0x44}, bytes.Repeat([]byte{0x11}, 500)...)},
		{"bad mp3 bitrate", []byte{0xFF, 0xFB, 0xF0, 0x44}},
		{"truncated jpeg magic", []byte{0xFF, 0xD8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if kind, mime, _, err := media.Sniff(tt.head); !errors.Is(err, media.ErrUnsupportedType) {
				t.Errorf("Sniff = %s %s %v, want ErrUnsupportedType", kind, mime, err)
			}
		})
	}
}

func TestTypeOf(t *testing.T) {
	tests := []struct {
		in       string
		wantMIME string
		wantExt  string
		wantErr  bool
	}{
		{"image/jpeg", "image/jpeg", "jpg", false},
		{"IMAGE/JPG", "image/jpeg", "jpg", false},
		{"audio/x-m4a", "audio/mp4", "m4a", false},
		{"audio/mp3; charset=binary", "audio/mpeg", "mp3", false},
		{"audio/opus", "audio/ogg", "ogg", false},
		{"video/quicktime", "video/quicktime", "mov", false},
		{"text/html", "", "", true},
		{"", "", "", true},
		{"image", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, mime, ext, err := media.TypeOf(tt.in)
			if (err != nil) != tt.wantErr || mime != tt.wantMIME || ext != tt.wantExt {
				t.Errorf("TypeOf(%q) = %q %q %v", tt.in, mime, ext, err)
			}
			if err != nil && !errors.Is(err, media.ErrUnsupportedType) {
				t.Errorf("error %v is not ErrUnsupportedType", err)
			}
		})
	}
}

func TestOwnerOf(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	valid := media.Key(1234, now, "jpg")
	id := strings.TrimSuffix(valid[strings.LastIndexByte(valid, '/')+1:], ".jpg")
	v4 := "0f8fad5b-d9cb-469f-a165-70867728950e"
	tests := []struct {
		name    string
		key     string
		want    int64
		wantErr bool
	}{
		{"from Key", valid, 1234, false},
		{"other extension", "chat/7/2026/01/" + id + ".m4a", 7, false},
		{"large user id", "chat/9223372036854775807/2026/11/" + id + ".mp4", 9223372036854775807, false},
		{"thumbnail", media.ThumbnailKey(valid), 0, true},
		{"presigned upload", "chat/upload/7/2026/01/" + id + ".m4a", 7, false},
		{"uploaded thumbnail", "chat/upload/7/2026/01/" + id + ".thumb.jpg", 0, true},
		{"upload twice", "chat/upload/upload/7/2026/01/" + id + ".m4a", 0, true},
		{"upload without user", "chat/upload/2026/01/" + id + ".m4a", 0, true},
		{"upload elsewhere", "chat/7/upload/2026/01/" + id + ".m4a", 0, true},
		{"empty", "", 0, true},
		{"wrong prefix", "media/1234/2026/11/" + id + ".jpg", 0, true},
		{"leading slash", "/chat/1234/2026/11/" + id + ".jpg", 0, true},
		{"dot dot user", "chat/../2026/11/" + id + ".jpg", 0, true},
		{"dot dot traversal", "chat/1234/2026/11/../../../5/2026/11/" + id + ".jpg", 0, true},
		{"dot dot name", "chat/1234/2026/11/..", 0, true},
		{"double slash", "chat/1234//2026/11/" + id + ".jpg", 0, true},
		{"extra segment", "chat/1234/2026/11/x/" + id + ".jpg", 0, true},
		{"zero user", "chat/0/2026/11/" + id + ".jpg", 0, true},
		{"negative user", "chat/-5/2026/11/" + id + ".jpg", 0, true},
		{"leading zero user", "chat/01234/2026/11/" + id + ".jpg", 0, true},
		{"plus sign user", "chat/+1234/2026/11/" + id + ".jpg", 0, true},
		{"user overflows int64", "chat/9223372036854775808/2026/11/" + id + ".jpg", 0, true},
		{"month 13", "chat/1234/2026/13/" + id + ".jpg", 0, true},
		{"signed month", "chat/1234/2026/+1/" + id + ".jpg", 0, true},
		{"signed year", "chat/1234/+999/11/" + id + ".jpg", 0, true},
		{"one-digit month", "chat/1234/2026/1/" + id + ".jpg", 0, true},
		{"short year", "chat/1234/26/11/" + id + ".jpg", 0, true},
		{"unknown extension", "chat/1234/2026/11/" + id + ".exe", 0, true},
		{"double extension", "chat/1234/2026/11/" + id + ".jpg.exe", 0, true},
		{"no extension", "chat/1234/2026/11/" + id, 0, true},
		{"uppercase uuid", "chat/1234/2026/11/" + strings.ToUpper(id) + ".jpg", 0, true},
		{"uuid v4", "chat/1234/2026/11/" + v4 + ".jpg", 0, true},
		{"not a uuid", "chat/1234/2026/11/hello.jpg", 0, true},
		{"backslash", "chat\\1234\\2026\\11\\" + id + ".jpg", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := media.OwnerOf(tt.key)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("OwnerOf(%q) = %d, %v; want %d, error %v", tt.key, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, media.ErrInvalidKey) {
				t.Errorf("error %v is not ErrInvalidKey", err)
			}
		})
	}
}

func TestKeyAndParseKey(t *testing.T) {
	now := time.Date(2026, 3, 5, 23, 59, 58, 123e6, time.FixedZone("X", -5*3600)) // 2026-03-06 in UTC
	key := media.Key(77, now, ".MP4")
	if !strings.HasPrefix(key, "chat/77/2026/03/") || !strings.HasSuffix(key, ".mp4") {
		t.Fatalf("Key = %q", key)
	}
	info, err := media.ParseKey(key)
	if err != nil {
		t.Fatalf("ParseKey: %v", err)
	}
	if info.UserID != 77 || info.Year != 2026 || info.Month != time.March || info.Ext != "mp4" || info.Thumbnail {
		t.Errorf("ParseKey = %+v", info)
	}
	if !info.Created.Equal(now.Truncate(time.Millisecond)) {
		t.Errorf("Created = %v, want %v", info.Created, now)
	}
	if other := media.Key(77, now, "mp4"); other == key {
		t.Error("two keys for the same instant are equal")
	}

	thumb := media.ThumbnailKey(key)
	if want := strings.TrimSuffix(key, ".mp4") + ".thumb.jpg"; thumb != want {
		t.Errorf("ThumbnailKey = %q, want %q", thumb, want)
	}
	if media.ThumbnailKey(thumb) != thumb {
		t.Error("ThumbnailKey of a thumbnail key changed it")
	}
	ti, err := media.ParseKey(thumb)
	if err != nil || !ti.Thumbnail || ti.ID != info.ID || ti.Ext != "jpg" {
		t.Errorf("ParseKey(thumbnail) = %+v, %v", ti, err)
	}
}

func TestAudioDuration(t *testing.T) {
	tests := []struct {
		name   string
		file   []byte
		mime   string
		want   int
		wantOK bool
	}{
		{"wav 3 s", mediatest.WAV(8000, 24000), "audio/wav", 3, true},
		{"wav 2.6 s rounds up", mediatest.WAV(10000, 26000), "audio/x-wav", 3, true},
		{"wav sniffed", mediatest.WAV(16000, 16000*4), "", 4, true},
		{"mp3 constant bit rate", mp3File(300, true, 0), "audio/mpeg", 8, true},    // 300×417 B at 128 kbit/s = 7.8 s
		{"mp3 xing frame count", mp3File(10, false, 1914), "audio/mpeg", 50, true}, // 1914×1152/44100 = 50.0 s
		{"m4a mvhd v0", mp4File("M4A ", 1000, mvhd0(44100, 44100*61)), "audio/mp4", 61, true},
		{"mp4 mvhd v1", mp4File("isom", 1000, mvhd1(90000, 90000*125)), "video/mp4", 125, true},
		{"m4a sniffed", mp4File("M4A ", 1000, mvhd0(1000, 9400)), "", 9, true},
		{"opus", opusFile(312, 48000*7+312), "audio/ogg", 7, true},
		{"mp4 without moov", append(ftyp("isom"), box("mdat", make([]byte, 50))...), "audio/mp4", 0, false},
		{"mp4 fragmented (zero duration)", mp4File("isom", 10, mvhd0(1000, 0)), "video/mp4", 0, false},
		{"mp4 box size past the end", append(ftyp("isom"), 0, 0, 0x10, 0, 'm', 'o', 'o', 'v'), "audio/mp4", 0, false},
		{"wav truncated header", mediatest.WAV(8000, 100)[:20], "audio/wav", 0, false},
		{"garbage as mp3", bytes.Repeat([]byte("garbage!"), 100), "audio/mpeg", 0, false},
		{"unsupported type", mediatest.WAV(8000, 8000), "audio/amr", 0, false},
		{"not a media type", mediatest.WAV(8000, 8000), "text/plain", 0, false},
		{"empty", nil, "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := media.AudioDuration(bytes.NewReader(tt.file), tt.mime)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("AudioDuration = %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
