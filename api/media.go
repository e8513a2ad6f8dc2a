package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/internal/media"
)

// MediaStore adapts a media store to what the service needs (Media).
type MediaStore struct {
	*media.Store
}

var _ Media = (*MediaStore)(nil)

// NewMediaStore adapts store for NewService.
func NewMediaStore(store *media.Store) *MediaStore { return &MediaStore{Store: store} }

// OwnerOf returns the user who uploaded the original behind key.
func (m *MediaStore) OwnerOf(key string) (int64, error) { return media.OwnerOf(key) }

// Kind checks the object behind key the way a presigned upload must be
// checked before a message may reference it (it exists, fits its limit,
// arrived in time, its bytes are of the kind its key names), and returns
// that kind. The store deletes objects that fail.
func (m *MediaStore) Kind(ctx context.Context, key string) (string, error) {
	obj, err := m.Verify(ctx, key)
	if errors.Is(err, media.ErrNotFound) {
		return "", &Error{Code: CodeInvalid, Message: "media_key does not name an uploaded object", Err: err}
	}
	if err != nil {
		return "", mediaError(err)
	}
	return string(obj.Kind), nil
}

// mediaError maps the media store's errors to the API's codes; anything
// else is the store being unreachable.
func mediaError(err error) *Error {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, media.ErrUnsupportedType):
		return &Error{Code: CodeUnsupportedMedia, Message: clientDetail(err) +
			"; allowed are JPEG, PNG, GIF, WebP and HEIC images, MP4, QuickTime, 3GP and WebM videos, and MP3, M4A, AAC, Ogg, WAV, AMR and WebM audio", Err: err}
	case errors.Is(err, media.ErrTooLarge), errors.As(err, &tooBig):
		return &Error{Code: CodeTooLarge, Message: clientDetail(err), Err: err}
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

// clientDetail is the store's reason ("unsupported type: unrecognised
// content") without its package prefixes, which mean nothing to a client.
func clientDetail(err error) string {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fmt.Sprintf("too large: the request body exceeds %d bytes", tooBig.Limit)
	}
	return strings.ReplaceAll(err.Error(), "media: ", "")
}

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

// multipartOverhead is what a multipart body may add around the file:
// boundaries, part headers, a few small fields.
const multipartOverhead = 64 << 10

// mediaRoutes serves uploads and media downloads.
type mediaRoutes struct {
	rest    *REST
	svc     *Service
	store   *media.Store
	logger  *slog.Logger
	maxBody int64
}

// RegisterMedia adds the upload and media download endpoints to r:
//
//	POST /api/v1/chat/upload               multipart field "file", streamed to storage
//	POST /api/v1/chat/uploads              {"content_type","size"} → a presigned PUT
//	GET  /api/v1/chat/messages/{id}/media  302 to the media (?thumbnail=true: its thumbnail)
//
// Uploads share the per-user write rate limit with sending messages.
func RegisterMedia(r *REST, svc *Service, store *media.Store, logger *slog.Logger) {
	m := &mediaRoutes{
		rest: r, svc: svc, store: store, logger: logger,
		maxBody: max(store.MaxSize(media.KindImage), store.MaxSize(media.KindVideo), store.MaxSize(media.KindAudio)) + multipartOverhead,
	}
	r.Handle("POST "+Prefix+"/upload", r.AuthedFunc(m.upload))
	r.Handle("POST "+Prefix+"/uploads", r.AuthedFunc(m.presignUpload))
	r.Handle("GET "+Prefix+"/messages/{id}/media", r.AuthedFunc(m.messageMedia))
}

func (m *mediaRoutes) upload(w http.ResponseWriter, req *http.Request, user int64) {
	if req.ContentLength > m.maxBody {
		m.rest.Fail(w, req, Errorf(CodeTooLarge, "request body of %d bytes exceeds %d bytes", req.ContentLength, m.maxBody))
		return
	}
	if !m.svc.limiter.allow(user) {
		m.rest.Fail(w, req, Errorf(CodeRateLimited, "too many uploads; slow down"))
		return
	}
	req.Body = http.MaxBytesReader(w, req.Body, m.maxBody)
	mr, err := req.MultipartReader()
	if err != nil {
		m.rest.Fail(w, req, Errorf(CodeBadRequest, "expected a multipart/form-data body with the file in field \"file\""))
		return
	}
	part, err := filePart(mr)
	if err != nil {
		m.rest.Fail(w, req, err)
		return
	}
	defer part.Close()
	body := &bodyReader{r: part}
	v, err := m.store.Upload(req.Context(), user, body, -1, part.Header.Get("Content-Type"))
	if err != nil {
		m.rest.Fail(w, req, uploadError(err, body.err))
		return
	}
	u, expires, err := m.store.PresignGet(req.Context(), v.Key)
	if err != nil {
		m.rest.Fail(w, req, mediaError(err))
		return
	}
	m.logger.DebugContext(req.Context(), "media uploaded", "user_id", user, "key", v.Key, "size", v.Size, "mime", v.MIME)
	WriteJSON(w, http.StatusOK, UploadView{
		URL: u, Key: v.Key, FileSize: v.Size, MIMEType: v.MIME, Kind: string(v.Kind), ExpiresAt: expires,
	})
}

// filePart skips to the part named "file"; other fields are ignored.
func filePart(mr *multipart.Reader) (*multipart.Part, error) {
	for {
		p, err := mr.NextPart()
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF):
			return nil, Errorf(CodeBadRequest, "the multipart body has no field \"file\"")
		case errors.As(err, &tooBig):
			return nil, mediaError(err)
		case err != nil:
			return nil, Errorf(CodeBadRequest, "malformed multipart body: %v", err)
		}
		if p.FormName() == "file" {
			return p, nil
		}
		p.Close()
	}
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

func (m *mediaRoutes) presignUpload(w http.ResponseWriter, req *http.Request, user int64) {
	var body struct {
		ContentType string `json:"content_type"`
		Size        int64  `json:"size"`
	}
	if err := decodeJSON(w, req, &body); err != nil {
		m.rest.Fail(w, req, err)
		return
	}
	if body.ContentType == "" {
		m.rest.Fail(w, req, Errorf(CodeBadRequest, "content_type is required, e.g. \"video/mp4\""))
		return
	}
	if body.Size <= 0 {
		m.rest.Fail(w, req, Errorf(CodeBadRequest, "size must be the file's length in bytes, more than 0"))
		return
	}
	if !m.svc.limiter.allow(user) {
		m.rest.Fail(w, req, Errorf(CodeRateLimited, "too many uploads; slow down"))
		return
	}
	p, err := m.store.PresignPut(req.Context(), user, body.ContentType, body.Size)
	if err != nil {
		m.rest.Fail(w, req, mediaError(err))
		return
	}
	WriteJSON(w, http.StatusOK, PresignedUploadView{
		UploadURL: p.URL, Method: p.Method, Headers: p.Headers, Key: p.Key, ExpiresAt: p.ExpiresAt,
		Size: p.Size, MaxSize: m.store.MaxSize(p.Kind), MIMEType: p.MIME, Kind: string(p.Kind),
	})
}

func (m *mediaRoutes) messageMedia(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		m.rest.Fail(w, req, err)
		return
	}
	q := req.URL.Query()
	if err := onlyParams(q, "thumbnail"); err != nil {
		m.rest.Fail(w, req, err)
		return
	}
	thumb := false
	if v := q.Get("thumbnail"); v != "" {
		if thumb, err = strconv.ParseBool(v); err != nil {
			m.rest.Fail(w, req, Errorf(CodeBadRequest, "thumbnail must be true or false"))
			return
		}
	}
	key, err := m.svc.MessageMediaKey(req.Context(), user, id, thumb)
	if err != nil {
		m.rest.Fail(w, req, err)
		return
	}
	// The row can outlive the object (a lifecycle rule, a manual clean-up):
	// a 404 here beats a redirect to storage's own error page.
	ok, err := m.store.Exists(req.Context(), key)
	if err != nil {
		m.rest.Fail(w, req, mediaError(err))
		return
	}
	if !ok {
		m.rest.Fail(w, req, Errorf(CodeNotFound, "the media of message %s is no longer stored", id))
		return
	}
	u, _, err := m.store.PresignGet(req.Context(), key)
	if err != nil {
		m.rest.Fail(w, req, mediaError(err))
		return
	}
	// The target expires; a cached redirect would outlive it.
	w.Header().Set("Cache-Control", "private, no-store")
	http.Redirect(w, req, u, http.StatusFound)
}

// MessageMediaKey returns the object key of a message's media, or of its
// thumbnail, for a participant of the message's conversation.
func (s *Service) MessageMediaKey(ctx context.Context, userID int64, messageID uuid.UUID, thumbnail bool) (string, error) {
	msg, err := s.q.GetMessage(ctx, messageID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", Errorf(CodeNotFound, "message %s not found", messageID)
	}
	if err != nil {
		return "", unavailable("the database", err)
	}
	if msg.SenderID != userID && msg.RecipientID != userID {
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
