package media

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/internal/media/mediakeys"
)

const thumbSuffix = ".thumb.jpg"

// Key returns a new object key for userID's upload at time now:
// chat/{userId}/{yyyy}/{mm}/{uuidv7}.{ext}. The UUIDv7 carries now to the
// millisecond, which Verify uses to tell when the upload was granted.
func Key(userID int64, now time.Time, ext string) string {
	return keyUnder(mediakeys.Prefix, userID, now, ext)
}

// uploadKey is Key under chat/upload/: the key a presigned PUT is for.
func uploadKey(userID int64, now time.Time, ext string) string {
	return keyUnder(mediakeys.Upload, userID, now, ext)
}

func keyUnder(prefix string, userID int64, now time.Time, ext string) string {
	now = now.UTC()
	ext = strings.ToLower(strings.TrimPrefix(ext, "."))
	return fmt.Sprintf("%s%d/%04d/%02d/%s.%s", prefix, userID, now.Year(), int(now.Month()), newUUIDv7(now), ext)
}

// verifiedKey is where Verify puts the upload under key (chat/upload/…):
// the same key outside chat/upload/.
func verifiedKey(key string) string {
	return mediakeys.Prefix + strings.TrimPrefix(key, mediakeys.Upload)
}

// newUUIDv7 builds a version 7 UUID from t rather than the wall clock, so
// that a key's path and its UUID agree even with an injected clock.
func newUUIDv7(t time.Time) uuid.UUID {
	var u uuid.UUID
	rand.Read(u[:]) // never fails since Go 1.24
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	u[6] = u[6]&0x0F | 0x70 // version 7
	u[8] = u[8]&0x3F | 0x80 // RFC 9562 variant
	return u
}

// KeyInfo is what a valid object key says about its object.
type KeyInfo struct {
	UserID    int64
	Year      int
	Month     time.Month
	ID        uuid.UUID
	Ext       string // file extension of an original, "jpg" for a thumbnail
	Thumbnail bool
	// Created is when the key was issued, from the UUIDv7 timestamp.
	Created time.Time
	// Upload: the key of a presigned PUT (chat/upload/…), not yet verified.
	Upload bool
}

// ParseKey validates an original's, an upload's or a thumbnail's key,
// accepting only the exact form Key, PresignPut and ThumbnailKey produce: no
// "..", empty or extra segments, non-canonical numbers or UUIDs, or unknown
// extensions.
func ParseKey(key string) (KeyInfo, error) {
	bad := func(why string) (KeyInfo, error) {
		return KeyInfo{}, fmt.Errorf("%w: %s", ErrInvalidKey, why)
	}
	if len(key) > 200 {
		return bad("too long")
	}
	var info KeyInfo
	if rest, ok := strings.CutPrefix(key, mediakeys.Upload); ok {
		info.Upload = true
		key = mediakeys.Prefix + rest
	}
	parts := strings.Split(key, "/")
	if len(parts) != 5 || parts[0]+"/" != mediakeys.Prefix {
		return bad("want chat/{userId}/{yyyy}/{mm}/{file} or chat/upload/{userId}/{yyyy}/{mm}/{file}")
	}
	uid, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || uid <= 0 || strconv.FormatInt(uid, 10) != parts[1] {
		return bad("user id")
	}
	info.UserID = uid
	year, err := strconv.Atoi(parts[2])
	if err != nil || !digits(parts[2], 4) || year < 2000 {
		return bad("year")
	}
	info.Year = year
	month, err := strconv.Atoi(parts[3])
	if err != nil || !digits(parts[3], 2) || month < 1 || month > 12 {
		return bad("month")
	}
	info.Month = time.Month(month)

	name := parts[4]
	if strings.HasSuffix(name, thumbSuffix) {
		if info.Upload {
			return bad("thumbnails are never uploaded")
		}
		info.Thumbnail = true
		info.Ext = "jpg"
		name = strings.TrimSuffix(name, thumbSuffix)
	} else {
		id, ext, ok := strings.Cut(name, ".")
		if !ok {
			return bad("missing extension")
		}
		if _, known := typeByExt(ext); !known {
			return bad("unknown extension")
		}
		info.Ext = ext
		name = id
	}
	id, err := uuid.Parse(name)
	if err != nil || id.String() != name || id.Version() != 7 || id.Variant() != uuid.RFC4122 {
		return bad("file name is not a lowercase UUIDv7")
	}
	info.ID = id
	info.Created = time.UnixMilli(int64(binary.BigEndian.Uint64(id[:8]) >> 16)).UTC()
	return info, nil
}

// digits reports whether s is exactly n ASCII digits (Atoi takes signs).
func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// OwnerOf returns the user who uploaded the original behind key. Thumbnail
// keys are refused: a message references originals only.
func OwnerOf(key string) (int64, error) {
	info, err := ParseKey(key)
	if err != nil {
		return 0, err
	}
	if info.Thumbnail {
		return 0, fmt.Errorf("%w: thumbnail key", ErrInvalidKey)
	}
	return info.UserID, nil
}

// ThumbnailKey returns the key of an original's JPEG thumbnail, next to it:
// chat/1/2026/11/<uuid>.mp4 → chat/1/2026/11/<uuid>.thumb.jpg.
func ThumbnailKey(key string) string {
	if strings.HasSuffix(key, thumbSuffix) {
		return key
	}
	dir, name := "", key
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		dir, name = key[:i+1], key[i+1:]
	}
	if i := strings.IndexByte(name, '.'); i >= 0 {
		name = name[:i]
	}
	return dir + name + thumbSuffix
}
