package chat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/internal/media"
)

// UploadView answers a multipart upload. url, file_size and mime_type are
// what the mobile app reads; url is a presigned GET valid until expires_at,
// and either it or key may be sent as a message's media.
type UploadView struct {
	URL       string    `json:"url"`
	Key       string    `json:"key"`
	FileSize  int64     `json:"file_size"`
	MIMEType  string    `json:"mime_type"`
	Kind      string    `json:"kind"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PresignedUploadView tells a client how to upload one large file straight
// to storage: send exactly size bytes with method to upload_url, with
// headers, before expires_at; then send a message with media_key = key.
type PresignedUploadView struct {
	UploadURL string            `json:"upload_url"`
	Method    string            `json:"method"`
	Headers   map[string]string `json:"headers"`
	Key       string            `json:"key"`
	ExpiresAt time.Time         `json:"expires_at"`
	Size      int64             `json:"size"`
	MaxSize   int64             `json:"max_size"`
	MIMEType  string            `json:"mime_type"`
	Kind      string            `json:"kind"`
}

// UploadSource yields the file of an upload request, no larger than
// maxSize, and its declared content type. It is called only once the
// service accepts the upload (media is configured, the user is under the
// rate limit), so that a refused request is answered before its body is
// read. Its errors are returned as they are.
type UploadSource func(maxSize int64) (file io.ReadCloser, contentType string, err error)

// errNoMedia answers media requests on a server deployed without a store.
var errNoMedia = Errorf(CodeNotConfigured,
	"media is not configured on this server: set CHAT_S3_BUCKET (and CHAT_S3_ENDPOINT for a non-AWS S3)")

// acceptUpload checks the user may upload now.
func (s *Service) acceptUpload(userID int64) error {
	if s.media == nil {
		return errNoMedia
	}
	return s.allowWrite(userID, WriteUpload, "uploads")
}

// Upload streams a file to storage and answers where it is. Uploads and
// presigned uploads share the per-user WriteUpload limit.
func (s *Service) Upload(ctx context.Context, userID int64, src UploadSource) (UploadView, error) {
	if err := s.acceptUpload(userID); err != nil {
		return UploadView{}, err
	}
	done, err := s.uploads.take(userID)
	if err != nil {
		return UploadView{}, err
	}
	defer done()
	maxSize := max(s.media.MaxSize(media.KindImage), s.media.MaxSize(media.KindVideo), s.media.MaxSize(media.KindAudio))
	file, contentType, err := src(maxSize)
	if err != nil {
		return UploadView{}, err
	}
	defer file.Close()
	body := &bodyReader{r: file}
	v, err := s.media.Upload(ctx, userID, body, -1, contentType)
	if err != nil {
		return UploadView{}, uploadError(err, body.err)
	}
	u, expires, err := s.media.PresignGet(ctx, v.Key)
	if err != nil {
		return UploadView{}, mediaError(err)
	}
	s.logger.DebugContext(ctx, "media uploaded", "user_id", userID, "key", v.Key, "size", v.Size, "mime", v.MIME)
	return UploadView{URL: u, Key: v.Key, FileSize: v.Size, MIMEType: v.MIME, Kind: string(v.Kind), ExpiresAt: expires}, nil
}

// PresignUpload issues a presigned PUT for one large file.
func (s *Service) PresignUpload(ctx context.Context, userID int64, in PresignInput) (PresignedUploadView, error) {
	if s.media == nil {
		return PresignedUploadView{}, errNoMedia
	}
	if in.ContentType == "" {
		return PresignedUploadView{}, Errorf(CodeBadRequest, "content_type is required, e.g. \"video/mp4\"")
	}
	if in.Size <= 0 {
		return PresignedUploadView{}, Errorf(CodeBadRequest, "size must be the file's length in bytes, more than 0")
	}
	if err := s.acceptUpload(userID); err != nil {
		return PresignedUploadView{}, err
	}
	p, err := s.media.PresignPut(ctx, userID, in.ContentType, in.Size)
	if err != nil {
		return PresignedUploadView{}, mediaError(err)
	}
	return PresignedUploadView{
		UploadURL: p.URL, Method: p.Method, Headers: p.Headers, Key: p.Key, ExpiresAt: p.ExpiresAt,
		Size: p.Size, MaxSize: s.media.MaxSize(p.Kind), MIMEType: p.MIME, Kind: string(p.Kind),
	}, nil
}

// MessageMediaURL returns a fresh download URL of a message's media, or of
// its thumbnail, for a participant of the message's conversation.
func (s *Service) MessageMediaURL(ctx context.Context, userID int64, messageID uuid.UUID, thumbnail bool) (string, error) {
	if s.media == nil {
		return "", errNoMedia
	}
	key, err := s.messageMediaKey(ctx, userID, messageID, thumbnail)
	if err != nil {
		return "", err
	}
	// The row can outlive the object (a lifecycle rule, a manual clean-up):
	// a 404 here beats a redirect to storage's own error page.
	ok, err := s.media.Exists(ctx, key)
	if err != nil {
		return "", mediaError(err)
	}
	if !ok {
		return "", Errorf(CodeNotFound, "the media of message %s is no longer stored", messageID)
	}
	u, _, err := s.media.PresignGet(ctx, key)
	if err != nil {
		return "", mediaError(err)
	}
	return u, nil
}

func (s *Service) messageMediaKey(ctx context.Context, userID int64, messageID uuid.UUID, thumbnail bool) (string, error) {
	msg, err := s.q.GetMessage(ctx, messageID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", Errorf(CodeNotFound, "message %s not found", messageID)
	}
	if err != nil {
		return "", unavailable("the database", err)
	}
	if ok, err := s.canSee(ctx, s.q, userID, msg); err != nil {
		return "", err
	} else if !ok {
		return "", Errorf(CodeForbidden, "message %s is not in one of your conversations", messageID)
	}
	key := msg.MediaKey
	what := "media"
	if thumbnail {
		key, what = msg.MediaThumbnailKey, "thumbnail"
	}
	if key == nil || *key == "" {
		return "", Errorf(CodeNotFound, "message %s has no %s", messageID, what)
	}
	return *key, nil
}

// verifyUpload checks the object behind key the way an upload must be
// checked before a message may reference it (it exists, fits its limit,
// arrived in time, its bytes are of the kind its key names), and returns
// the object the message is to reference: for a presigned upload, its
// verified copy, which the upload's URL cannot overwrite. The store deletes
// objects that fail, so a rejected upload cannot be referenced later either.
func (s *Service) verifyUpload(ctx context.Context, key string) (media.Object, error) {
	obj, err := s.media.Verify(ctx, key)
	if errors.Is(err, media.ErrNotFound) {
		return media.Object{}, &Error{Code: CodeInvalid, Message: "media_key does not name an uploaded object", Err: err}
	}
	if err != nil {
		return media.Object{}, mediaError(err)
	}
	return obj, nil
}

// mediaError maps the media store's errors to codes; anything else is the
// store being unreachable.
func mediaError(err error) *Error {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, media.ErrUnsupportedType):
		return &Error{Code: CodeUnsupportedMedia, Message: clientDetail(err) +
			"; allowed are JPEG, PNG, GIF, WebP and HEIC images, MP4, QuickTime, 3GP and WebM videos, and MP3, M4A, AAC, Ogg, WAV, AMR and WebM audio", Err: err}
	case errors.Is(err, media.ErrTooLarge), errors.As(err, &tooBig):
		return &Error{Code: CodeTooLarge, Message: clientDetail(err), Err: err}
	case errors.Is(err, media.ErrCorrupt):
		return &Error{Code: CodeInvalid, Message: clientDetail(err), Err: err}
	case errors.Is(err, media.ErrInvalidSize):
		return &Error{Code: CodeBadRequest, Message: clientDetail(err), Err: err}
	case errors.Is(err, media.ErrInvalidKey):
		return &Error{Code: CodeBadRequest, Message: clientDetail(err), Err: err}
	case errors.Is(err, media.ErrNotFound):
		return &Error{Code: CodeNotFound, Message: "media not found", Err: err}
	case errors.Is(err, media.ErrExpired):
		return &Error{Code: CodeForbidden, Message: "the upload finished after its URL expired; request a new one", Err: err}
	}
	return unavailable("the media store", err)
}

// TooLarge is the error of a request body over its limit (an
// *http.MaxBytesError from http.MaxBytesReader), worded like the store's.
func TooLarge(err error) *Error { return mediaError(err) }

// clientDetail is the store's reason ("unsupported type: unrecognised
// content") without its package prefixes, which mean nothing to a client.
func clientDetail(err error) string {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fmt.Sprintf("too large: the request body exceeds %d bytes", tooBig.Limit)
	}
	return strings.ReplaceAll(err.Error(), "media: ", "")
}

// bodyReader remembers why reading the client's body failed, to tell a
// broken or oversized request from a storage failure.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return n, err
}

// uploadError maps an Upload failure; readErr is the client body's own
// failure, if any. A body that breaks off mid-file is the client's problem
// (400), not the store's (503).
func uploadError(err, readErr error) *Error {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(readErr, &tooBig):
		return mediaError(readErr)
	case readErr != nil:
		return &Error{Code: CodeBadRequest, Message: "the upload ended before the file was complete", Err: err}
	}
	return mediaError(err)
}
