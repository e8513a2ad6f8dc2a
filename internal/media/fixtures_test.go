package media_test

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
)

// Real files, generated: images by the standard encoders, the rest from
// their specifications.

func testImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255})
		}
	}
	return img
}

func pngFile(t testing.TB, w, h int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, testImage(w, h)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegFile(t testing.TB, w, h int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, testImage(w, h), &jpeg.Options{Quality: 70}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gifFile(t testing.TB, w, h int) []byte {
	var buf bytes.Buffer
	if err := gif.Encode(&buf, testImage(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func box(typ string, payload ...[]byte) []byte {
	body := bytes.Join(payload, nil)
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	b = append(b, typ...)
	return append(b, body...)
}

func ftyp(major string, compat ...string) []byte {
	p := append([]byte(major), 0, 0, 2, 0)
	for _, c := range compat {
		p = append(p, c...)
	}
	return box("ftyp", p)
}

// mvhd0 is a version 0 movie header box.
func mvhd0(timescale, duration uint32) []byte {
	p := make([]byte, 100)
	binary.BigEndian.PutUint32(p[12:], timescale)
	binary.BigEndian.PutUint32(p[16:], duration)
	return box("mvhd", p)
}

// mvhd1 is a version 1 movie header box, with 64-bit times.
func mvhd1(timescale uint32, duration uint64) []byte {
	p := make([]byte, 112)
	p[0] = 1
	binary.BigEndian.PutUint32(p[20:], timescale)
	binary.BigEndian.PutUint64(p[24:], duration)
	return box("mvhd", p)
}

// mp4File is an ISO media file with its movie box after the media data, as
// phones write it.
func mp4File(major string, mediaBytes int, mvhd []byte, compat ...string) []byte {
	media := make([]byte, mediaBytes)
	for i := range media {
		media[i] = byte(i * 31)
	}
	return bytes.Join([][]byte{ftyp(major, compat...), box("free"), box("mdat", media), box("moov", mvhd)}, nil)
}

// mp3File is frames of MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, joint
// stereo, each 417 bytes, optionally after an ID3v2 tag and with a Xing
// header claiming xingFrames frames.
func mp3File(frames int, id3 bool, xingFrames uint32) []byte {
	var b []byte
	if id3 {
		b = append(b, "ID3\x04\x00\x00\x00\x00\x00\x14"...) // 20-byte tag body
		b = append(b, make([]byte, 20)...)
	}
	frame := func() []byte {
		f := make([]byte, 417)
		copy(f, []byte{0xFF, 0xFB, 0x90, 0x44})
		return f
	}
	if xingFrames > 0 {
		f := frame()
		copy(f[4+32:], "Xing\x00\x00\x00\x01")
		binary.BigEndian.PutUint32(f[4+32+8:], xingFrames)
		b = append(b, f...)
	}
	for range frames {
		b = append(b, frame()...)
	}
	return b
}

// oggPage builds one Ogg page (the CRC is left zero: readers here do not
// check it).
func oggPage(serial uint32, seq uint32, granule int64, headerType byte, packet []byte) []byte {
	var b []byte
	b = append(b, "OggS\x00"...)
	b = append(b, headerType)
	b = binary.LittleEndian.AppendUint64(b, uint64(granule))
	b = binary.LittleEndian.AppendUint32(b, serial)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = append(b, 0, 0, 0, 0)
	var segs []byte
	n := len(packet)
	for n >= 255 {
		segs = append(segs, 255)
		n -= 255
	}
	segs = append(segs, byte(n))
	b = append(b, byte(len(segs)))
	b = append(b, segs...)
	return append(b, packet...)
}

// opusFile is an Ogg Opus stream whose last page ends at granule (48 kHz).
func opusFile(preSkip uint16, granule int64) []byte {
	head := []byte("OpusHead\x01\x01")
	head = binary.LittleEndian.AppendUint16(head, preSkip)
	head = binary.LittleEndian.AppendUint32(head, 48000)
	head = append(head, 0, 0, 0)
	var b []byte
	b = append(b, oggPage(7, 0, 0, 2, head)...)
	b = append(b, oggPage(7, 1, 0, 0, []byte("OpusTags\x00\x00\x00\x00\x00\x00\x00\x00"))...)
	b = append(b, oggPage(7, 2, granule/2, 0, make([]byte, 600))...)
	b = append(b, oggPage(7, 3, granule, 4, make([]byte, 300))...)
	return b
}

// webmHead is the start of a WebM (or other Matroska) file.
func webmHead(docType string) []byte {
	b := []byte{0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x80 | byte(len(docType))}
	b = append(b, docType...)
	return append(b, make([]byte, 64)...)
}

func riff(form string, chunk string, n int) []byte {
	b := []byte("RIFF")
	b = binary.LittleEndian.AppendUint32(b, uint32(4+8+n))
	b = append(b, form...)
	b = append(b, chunk...)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	return append(b, make([]byte, n)...)
}
