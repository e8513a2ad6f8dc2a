package media

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
)

// AudioDuration estimates the playing time of an audio file, in whole
// seconds rounded to nearest, from its headers alone:
//   - WAV: data chunk size / byte rate;
//   - MP3: frame count from a Xing/Info or VBRI header, else the constant
//     bit rate of the first frame over the file size;
//   - M4A and other MP4/QuickTime/3GP files (video too): the movie header's
//     duration / timescale;
//   - Ogg Opus and Vorbis: the last page's granule position.
//
// mimeType may be empty, in which case the type is sniffed. ok is false for
// other types or when the headers cannot be parsed. It seeks freely in r,
// reading only headers, so an MP4 whose index sits after its data is cheap.
func AudioDuration(r io.ReadSeeker, mimeType string) (seconds int, ok bool) {
	var t fileType
	if mimeType == "" {
		head := make([]byte, SniffLen)
		n, err := readAt(r, 0, head)
		if err != nil && n == 0 {
			return 0, false
		}
		if t, err = sniff(head[:n]); err != nil {
			return 0, false
		}
	} else {
		m, err := parseMIME(mimeType)
		if err != nil {
			return 0, false
		}
		if t, ok = typeByMIME(m); !ok {
			return 0, false
		}
	}
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil || size <= 0 {
		return 0, false
	}
	var d float64
	switch t {
	case typeWAV:
		d, ok = wavDuration(r, size)
	case typeMP3:
		d, ok = mp3Duration(r, size)
	case typeM4A, typeMP4, typeMOV, type3GP, type3G2, type3GPAudio:
		d, ok = mp4Duration(r, size)
	case typeOgg:
		d, ok = oggDuration(r, size)
	default:
		return 0, false
	}
	if !ok || d < 0 || d > math.MaxInt32 || math.IsNaN(d) {
		return 0, false
	}
	return int(math.Round(d)), true
}

// readAt reads len(buf) bytes at off; a short read at end of file returns
// the bytes read with io.ErrUnexpectedEOF or io.EOF.
func readAt(r io.ReadSeeker, off int64, buf []byte) (int, error) {
	if _, err := r.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(r, buf)
}

func wavDuration(r io.ReadSeeker, size int64) (float64, bool) {
	var hdr [12]byte
	if _, err := readAt(r, 0, hdr[:]); err != nil || string(hdr[:4]) != "RIFF" || string(hdr[8:]) != "WAVE" {
		return 0, false
	}
	var byteRate, dataSize int64
	off := int64(12)
	for range 64 { // real files have a handful of chunks
		var ch [8]byte
		if _, err := readAt(r, off, ch[:]); err != nil {
			break
		}
		n := int64(binary.LittleEndian.Uint32(ch[4:]))
		body := off + 8
		switch string(ch[:4]) {
		case "fmt ":
			var f [16]byte
			if _, err := readAt(r, body, f[:]); err != nil {
				return 0, false
			}
			byteRate = int64(binary.LittleEndian.Uint32(f[8:12]))
		case "data":
			// Streaming writers leave the size at 0 or all ones.
			if n == 0 || n == 0xFFFFFFFF || body+n > size {
				n = size - body
			}
			dataSize = n
		}
		off = body + n + n&1 // chunks are padded to even length
		if byteRate > 0 && dataSize > 0 {
			break
		}
	}
	if byteRate <= 0 || dataSize <= 0 {
		return 0, false
	}
	return float64(dataSize) / float64(byteRate), true
}

type mp3Header struct {
	mpeg1      bool
	bitrate    int // bits per second
	sampleRate int
	frameLen   int
	sideInfo   int // bytes of side information after the 4-byte header
}

var (
	mp3Bitrates1 = [16]int{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0}
	mp3Bitrates2 = [16]int{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0}
)

// parseMP3Header decodes an MPEG-1/2/2.5 Layer III frame header.
func parseMP3Header(b []byte) (mp3Header, bool) {
	if len(b) < 4 || b[0] != 0xFF || b[1]&0xE0 != 0xE0 {
		return mp3Header{}, false
	}
	version := (b[1] >> 3) & 3 // 0: 2.5, 1: reserved, 2: MPEG-2, 3: MPEG-1
	layer := (b[1] >> 1) & 3   // 1: Layer III
	brIdx, srIdx := b[2]>>4, (b[2]>>2)&3
	if version == 1 || layer != 1 || brIdx == 0 || brIdx == 15 || srIdx == 3 {
		return mp3Header{}, false
	}
	h := mp3Header{mpeg1: version == 3}
	mono := b[3]>>6 == 3
	sr := [3]int{44100, 48000, 32000}[srIdx]
	switch version {
	case 3:
		h.bitrate = mp3Bitrates1[brIdx] * 1000
		h.sideInfo = 32
		if mono {
			h.sideInfo = 17
		}
	default:
		sr /= 2
		if version == 0 {
			sr /= 2
		}
		h.bitrate = mp3Bitrates2[brIdx] * 1000
		h.sideInfo = 17
		if mono {
			h.sideInfo = 9
		}
	}
	h.sampleRate = sr
	pad := int(b[2]>>1) & 1
	if h.mpeg1 {
		h.frameLen = 144*h.bitrate/sr + pad
	} else {
		h.frameLen = 72*h.bitrate/sr + pad
	}
	return h, true
}

func (h mp3Header) samplesPerFrame() int {
	if h.mpeg1 {
		return 1152
	}
	return 576
}

func mp3Duration(r io.ReadSeeker, size int64) (float64, bool) {
	// Skip a leading ID3v2 tag, which may hold large cover art.
	var base int64
	var id3 [10]byte
	if _, err := readAt(r, 0, id3[:]); err == nil {
		if tag, ok := id3Size(id3[:]); ok {
			base = int64(tag)
		}
	}
	if base >= size {
		return 0, false
	}
	buf := make([]byte, min(size-base, 64<<10))
	n, _ := readAt(r, base, buf)
	buf = buf[:n]

	// Find the first frame whose successor also parses, to skip junk
	// that merely looks like a sync word.
	var h mp3Header
	pos := -1
	for i := 0; i+4 <= len(buf); i++ {
		hh, ok := parseMP3Header(buf[i:])
		if !ok {
			continue
		}
		if next := i + hh.frameLen; next+4 <= len(buf) {
			if _, ok := parseMP3Header(buf[next:]); !ok {
				continue
			}
		}
		h, pos = hh, i
		break
	}
	if pos < 0 {
		return 0, false
	}
	frame := buf[pos:]
	perFrame := float64(h.samplesPerFrame()) / float64(h.sampleRate)
	// Xing/Info (LAME and most encoders) right after the side information.
	if x := 4 + h.sideInfo; x+12 <= len(frame) {
		tag := string(frame[x : x+4])
		if (tag == "Xing" || tag == "Info") && frame[x+7]&1 != 0 {
			if frames := binary.BigEndian.Uint32(frame[x+8:]); frames > 0 {
				return float64(frames) * perFrame, true
			}
		}
	}
	// VBRI (Fraunhofer) at a fixed offset.
	if v := 4 + 32; v+18 <= len(frame) && string(frame[v:v+4]) == "VBRI" {
		if frames := binary.BigEndian.Uint32(frame[v+14:]); frames > 0 {
			return float64(frames) * perFrame, true
		}
	}
	// Otherwise assume a constant bit rate.
	end := size
	var tail [3]byte
	if size >= 128 {
		if _, err := readAt(r, size-128, tail[:]); err == nil && string(tail[:]) == "TAG" {
			end -= 128 // ID3v1 trailer
		}
	}
	audio := end - (base + int64(pos))
	if audio <= 0 {
		return 0, false
	}
	return float64(audio) * 8 / float64(h.bitrate), true
}

// mp4Duration reads the movie header (moov/mvhd) of an ISO media file.
func mp4Duration(r io.ReadSeeker, size int64) (float64, bool) {
	moov, moovEnd, ok := findBox(r, 0, size, "moov")
	if !ok {
		return 0, false
	}
	mvhd, mvhdEnd, ok := findBox(r, moov, moovEnd, "mvhd")
	if !ok {
		return 0, false
	}
	var b [32]byte
	n, _ := readAt(r, mvhd, b[:min(int64(len(b)), mvhdEnd-mvhd)])
	var timescale, duration uint64
	switch {
	case n >= 20 && b[0] == 0: // version, flags, created, modified (32-bit)
		timescale = uint64(binary.BigEndian.Uint32(b[12:]))
		duration = uint64(binary.BigEndian.Uint32(b[16:]))
		if duration == math.MaxUint32 {
			return 0, false
		}
	case n >= 32 && b[0] == 1: // the same with 64-bit times
		timescale = uint64(binary.BigEndian.Uint32(b[20:]))
		duration = binary.BigEndian.Uint64(b[24:])
		if duration == math.MaxUint64 {
			return 0, false
		}
	default:
		return 0, false
	}
	// Fragmented files leave the duration at 0: unknown, not empty.
	if timescale == 0 || duration == 0 {
		return 0, false
	}
	return float64(duration) / float64(timescale), true
}

// findBox looks for a box named typ among the boxes between off and end,
// returning where its payload starts and ends.
func findBox(r io.ReadSeeker, off, end int64, typ string) (start, stop int64, ok bool) {
	for range 1024 { // a bound against crafted files with endless tiny boxes
		if off+8 > end {
			return 0, 0, false
		}
		var h [16]byte
		if _, err := readAt(r, off, h[:8]); err != nil {
			return 0, 0, false
		}
		size := int64(binary.BigEndian.Uint32(h[:4]))
		hdr := int64(8)
		switch size {
		case 0: // extends to the end of the enclosing space
			size = end - off
		case 1: // a 64-bit size follows the type
			if _, err := readAt(r, off+8, h[8:16]); err != nil {
				return 0, 0, false
			}
			u := binary.BigEndian.Uint64(h[8:16])
			if u > math.MaxInt64 {
				return 0, 0, false
			}
			size, hdr = int64(u), 16
		}
		if size < hdr || off+size > end {
			return 0, 0, false
		}
		if string(h[4:8]) == typ {
			return off + hdr, off + size, true
		}
		off += size
	}
	return 0, 0, false
}

// oggDuration divides the last granule position of the first logical
// stream by its sample rate (always 48 kHz for Opus, minus its pre-skip).
func oggDuration(r io.ReadSeeker, size int64) (float64, bool) {
	first := make([]byte, min(size, 512))
	n, _ := readAt(r, 0, first)
	first = first[:n]
	if len(first) < 28 || string(first[:4]) != "OggS" {
		return 0, false
	}
	serial := binary.LittleEndian.Uint32(first[14:])
	payload := first[min(len(first), 27+int(first[26])):]
	var rate, preSkip float64
	switch {
	case len(payload) >= 19 && bytes.HasPrefix(payload, []byte("OpusHead")):
		rate = 48000
		preSkip = float64(binary.LittleEndian.Uint16(payload[10:]))
	case len(payload) >= 16 && bytes.HasPrefix(payload, []byte("\x01vorbis")):
		rate = float64(binary.LittleEndian.Uint32(payload[12:]))
	default:
		return 0, false
	}
	if rate == 0 {
		return 0, false
	}
	// Pages are at most ~64 KiB, so the last complete one starts in the tail.
	tailLen := min(size, 65536+27)
	tail := make([]byte, tailLen)
	n, _ = readAt(r, size-tailLen, tail)
	tail = tail[:n]
	for i := len(tail) - 27; i >= 0; i-- {
		if string(tail[i:i+4]) != "OggS" || binary.LittleEndian.Uint32(tail[i+14:]) != serial {
			continue
		}
		g := int64(binary.LittleEndian.Uint64(tail[i+6:]))
		if g < 0 {
			continue // -1: no packet ends on this page
		}
		d := (float64(g) - preSkip) / rate
		return max(d, 0), true
	}
	return 0, false
}
