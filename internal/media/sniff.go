package media

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"mime"
	"strings"
)

// Kind is the broad class of an upload; each kind has its own size limit.
type Kind string

// The kinds of media a chat message may carry.
const (
	KindImage Kind = "image"
	KindVideo Kind = "video"
	KindAudio Kind = "audio"
)

// SniffLen is how many leading bytes Sniff needs to recognise every type.
const SniffLen = 512

// fileType is one allowed media type. Every MIME type has exactly one file
// extension and the other way round, so a key's extension names its type.
type fileType struct {
	Kind Kind
	MIME string
	Ext  string
}

var (
	typeJPEG = fileType{KindImage, "image/jpeg", "jpg"}
	typePNG  = fileType{KindImage, "image/png", "png"}
	typeGIF  = fileType{KindImage, "image/gif", "gif"}
	typeWebP = fileType{KindImage, "image/webp", "webp"}
	typeHEIC = fileType{KindImage, "image/heic", "heic"}
	typeHEIF = fileType{KindImage, "image/heif", "heif"}

	typeMP4  = fileType{KindVideo, "video/mp4", "mp4"}
	typeMOV  = fileType{KindVideo, "video/quicktime", "mov"}
	type3GP  = fileType{KindVideo, "video/3gpp", "3gp"}
	type3G2  = fileType{KindVideo, "video/3gpp2", "3g2"}
	typeWebM = fileType{KindVideo, "video/webm", "webm"}

	typeMP3      = fileType{KindAudio, "audio/mpeg", "mp3"}
	typeM4A      = fileType{KindAudio, "audio/mp4", "m4a"}
	typeAAC      = fileType{KindAudio, "audio/aac", "aac"}
	typeOgg      = fileType{KindAudio, "audio/ogg", "ogg"}
	typeWAV      = fileType{KindAudio, "audio/wav", "wav"}
	typeAMR      = fileType{KindAudio, "audio/amr", "amr"}
	typeWebA     = fileType{KindAudio, "audio/webm", "weba"}
	type3GPAudio = fileType{KindAudio, "audio/3gpp", "3ga"}
)

// allTypes lists every allowed type (read-only); lookups are linear
// because the list is short.
var allTypes = [...]fileType{
	typeJPEG, typePNG, typeGIF, typeWebP, typeHEIC, typeHEIF,
	typeMP4, typeMOV, type3GP, type3G2, typeWebM,
	typeMP3, typeM4A, typeAAC, typeOgg, typeWAV, typeAMR, typeWebA, type3GPAudio,
}

// mimeAliases maps names that clients commonly send to the canonical type
// (read-only).
var mimeAliases = map[string]string{
	"image/jpg":           "image/jpeg",
	"image/pjpeg":         "image/jpeg",
	"image/x-png":         "image/png",
	"image/heic-sequence": "image/heic",
	"image/heif-sequence": "image/heif",
	"video/x-m4v":         "video/mp4",
	"audio/mp3":           "audio/mpeg",
	"audio/x-mp3":         "audio/mpeg",
	"audio/mpeg3":         "audio/mpeg",
	"audio/x-mpeg":        "audio/mpeg",
	"audio/m4a":           "audio/mp4",
	"audio/x-m4a":         "audio/mp4",
	"audio/aacp":          "audio/aac",
	"audio/x-aac":         "audio/aac",
	"audio/opus":          "audio/ogg",
	"application/ogg":     "audio/ogg",
	"audio/x-wav":         "audio/wav",
	"audio/wave":          "audio/wav",
	"audio/vnd.wave":      "audio/wav",
	"audio/x-pn-wav":      "audio/wav",
	"audio/amr-nb":        "audio/amr",
	"audio/3gp":           "audio/3gpp",
}

func typeByMIME(m string) (fileType, bool) {
	if a, ok := mimeAliases[m]; ok {
		m = a
	}
	for _, t := range allTypes {
		if t.MIME == m {
			return t, true
		}
	}
	return fileType{}, false
}

func typeByExt(ext string) (fileType, bool) {
	for _, t := range allTypes {
		if t.Ext == ext {
			return t, true
		}
	}
	return fileType{}, false
}

// TypeOf returns the kind and canonical MIME type and extension for a
// declared content type such as "image/jpg; q=1", or ErrUnsupportedType.
func TypeOf(contentType string) (kind Kind, mimeType, ext string, err error) {
	m, err := parseMIME(contentType)
	if err != nil {
		return "", "", "", err
	}
	t, ok := typeByMIME(m)
	if !ok {
		return "", "", "", fmt.Errorf("%w: %q", ErrUnsupportedType, m)
	}
	return t.Kind, t.MIME, t.Ext, nil
}

func parseMIME(contentType string) (string, error) {
	m, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("%w: content type %q: %v", ErrUnsupportedType, contentType, err)
	}
	return strings.ToLower(m), nil
}

// Sniff identifies an allowed media type from the leading bytes of a file
// (pass at least SniffLen bytes when the file is that long). Names and
// declared types play no part. Unrecognised content gives ErrUnsupportedType.
//
// An MP4, 3GP or WebM container with a generic brand may hold audio only;
// Sniff reports it as video, and Upload and Verify turn it into audio when
// the client declared an audio type.
func Sniff(head []byte) (kind Kind, mimeType, ext string, err error) {
	t, err := sniff(head)
	if err != nil {
		return "", "", "", err
	}
	return t.Kind, t.MIME, t.Ext, nil
}

func sniff(b []byte) (fileType, error) {
	// The first SniffLen bytes decide, however many a caller has: Upload
	// and Verify read only those, and a longer head must not change the
	// answer (an MP3 frame longer than the head is checked for a second
	// frame header only when the caller happens to pass one).
	b = b[:min(len(b), SniffLen)]
	switch {
	case len(b) == 0:
		return fileType{}, fmt.Errorf("%w: empty file", ErrUnsupportedType)
	case bytes.HasPrefix(b, []byte("\xFF\xD8\xFF")):
		return typeJPEG, nil
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return typePNG, nil
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return typeGIF, nil
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return typeWebP, nil
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WAVE":
		return typeWAV, nil
	case len(b) >= 12 && string(b[4:8]) == "ftyp":
		return sniffFtyp(b)
	case bytes.HasPrefix(b, []byte("\x1A\x45\xDF\xA3")):
		return sniffEBML(b)
	case bytes.HasPrefix(b, []byte("OggS")):
		return sniffOgg(b)
	case bytes.HasPrefix(b, []byte("#!AMR\n")):
		return typeAMR, nil
	case bytes.HasPrefix(b, []byte("ID3")):
		// An ID3v2 tag normally fronts MP3; look past it for an ADTS stream.
		if off, ok := id3Size(b); ok && off+2 <= len(b) && isADTS(b[off:]) {
			return typeAAC, nil
		}
		return typeMP3, nil
	case isADTS(b):
		return typeAAC, nil
	case isMP3Frame(b):
		return typeMP3, nil
	}
	return fileType{}, fmt.Errorf("%w: unrecognised content", ErrUnsupportedType)
}

// sniffFtyp classifies an ISO base media file (MP4, QuickTime, 3GP, HEIF)
// by its major brand, falling back to the compatible brands.
func sniffFtyp(b []byte) (fileType, error) {
	size := int(binary.BigEndian.Uint32(b[:4]))
	if size < 16 || size > len(b) {
		size = min(len(b), 256) // truncated head or odd size: read what is there
	}
	brands := []string{string(b[8:12])}
	for i := 16; i+4 <= size; i += 4 {
		brands = append(brands, string(b[i:i+4]))
	}
	for _, br := range brands {
		if br == "avif" || br == "avis" {
			// AVIF shares HEIF's brands but nothing here can decode it.
			return fileType{}, fmt.Errorf("%w: AVIF", ErrUnsupportedType)
		}
	}
	for _, br := range brands {
		if t, ok := ftypBrand(br); ok {
			return t, nil
		}
	}
	return fileType{}, fmt.Errorf("%w: ISO media brand %q", ErrUnsupportedType, brands[0])
}

func ftypBrand(brand string) (fileType, bool) {
	switch brand {
	case "M4A ", "M4B ", "M4P ", "F4A ", "F4B ":
		return typeM4A, true
	case "qt  ":
		return typeMOV, true
	case "heic", "heix", "heim", "heis", "hevc", "hevx":
		return typeHEIC, true
	case "mif1", "msf1":
		return typeHEIF, true
	case "3g2a", "3g2b", "3g2c":
		return type3G2, true
	case "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "iso7", "iso8", "iso9",
		"mp41", "mp42", "mp71", "avc1", "hvc1", "dash", "M4V ", "M4VH", "M4VP",
		"F4V ", "F4P ", "mmp4", "MSNV", "XAVC", "NDAS":
		return typeMP4, true
	}
	if strings.HasPrefix(brand, "3gp") || strings.HasPrefix(brand, "3ge") ||
		strings.HasPrefix(brand, "3gg") || strings.HasPrefix(brand, "3gs") {
		return type3GP, true
	}
	return fileType{}, false
}

// sniffEBML accepts WebM and refuses other Matroska files: the DocType
// element (ID 0x4282) sits in the EBML header at the start.
func sniffEBML(b []byte) (fileType, error) {
	hdr := b[:min(len(b), 64)]
	if i := bytes.Index(hdr, []byte{0x42, 0x82}); i >= 0 && i+3 <= len(hdr) {
		// A one-byte size is all a DocType needs ("webm" is 4 bytes: 0x84).
		n := int(hdr[i+2] & 0x7F)
		if hdr[i+2]&0x80 != 0 && i+3+n <= len(hdr) && string(hdr[i+3:i+3+n]) == "webm" {
			return typeWebM, nil
		}
	}
	return fileType{}, fmt.Errorf("%w: Matroska other than WebM", ErrUnsupportedType)
}

// sniffOgg accepts Ogg streams whose first packet is Opus or Vorbis.
func sniffOgg(b []byte) (fileType, error) {
	if len(b) >= 27 {
		payload := b[min(len(b), 27+int(b[26])):]
		if bytes.HasPrefix(payload, []byte("OpusHead")) || bytes.HasPrefix(payload, []byte("\x01vorbis")) {
			return typeOgg, nil
		}
	}
	return fileType{}, fmt.Errorf("%w: Ogg stream that is not Opus or Vorbis", ErrUnsupportedType)
}

// id3Size returns the length of a leading ID3v2 tag, header included.
func id3Size(b []byte) (int, bool) {
	if len(b) < 10 || string(b[:3]) != "ID3" {
		return 0, false
	}
	for _, c := range b[6:10] {
		if c&0x80 != 0 {
			return 0, false // sizes are "syncsafe": 7 bits per byte
		}
	}
	n := int(b[6])<<21 | int(b[7])<<14 | int(b[8])<<7 | int(b[9])
	n += 10
	if b[5]&0x10 != 0 {
		n += 10 // footer present
	}
	return n, true
}

// isADTS reports an AAC ADTS frame header: 12-bit sync, layer 0.
func isADTS(b []byte) bool {
	return len(b) >= 4 && b[0] == 0xFF && b[1]&0xF6 == 0xF0 && (b[2]>>2)&0x0F < 13
}

// isMP3Frame reports a plausible MPEG audio Layer III frame header, and a
// second one right after the first frame when b is long enough, since four
// bytes alone are weak evidence.
func isMP3Frame(b []byte) bool {
	h, ok := parseMP3Header(b)
	if !ok {
		return false
	}
	if next := h.frameLen; next+4 <= len(b) {
		_, ok = parseMP3Header(b[next:])
	}
	return ok
}
