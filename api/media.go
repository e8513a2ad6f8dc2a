package api

import (
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/parleychat/parley/internal/chat"
)

// multipartOverhead is what a multipart body may add around the file:
// boundaries, part headers, a few small fields.
const multipartOverhead = 64 << 10

// mediaRoutes serves uploads and media downloads.
type mediaRoutes struct {
	rest *REST
	svc  *chat.Service
}

// registerMedia adds the upload and media download endpoints to r:
//
//	POST /api/v1/chat/upload               multipart field "file", streamed to storage
//	POST /api/v1/chat/uploads              {"content_type","size"} → a presigned PUT
//	GET  /api/v1/chat/messages/{id}/media  302 to the media (?thumbnail=true: its thumbnail)
//
// They are registered on every server: one deployed without a media store
// answers them 503 not_configured, saying what to set, rather than 404.
func registerMedia(r *REST, svc *chat.Service) {
	m := &mediaRoutes{rest: r, svc: svc}
	r.Handle("POST "+Prefix+"/upload", r.authed(m.upload))
	r.Handle("POST "+Prefix+"/uploads", r.authed(m.presignUpload))
	r.Handle("GET "+Prefix+"/messages/{id}/media", r.authed(m.messageMedia))
}

func (m *mediaRoutes) upload(w http.ResponseWriter, req *http.Request, user int64) {
	v, err := m.svc.Upload(req.Context(), user, func(maxSize int64) (io.ReadCloser, string, error) {
		maxBody := maxSize + multipartOverhead
		if req.ContentLength > maxBody {
			return nil, "", chat.Errorf(chat.CodeTooLarge, "request body of %d bytes exceeds %d bytes", req.ContentLength, maxBody)
		}
		if m.rest.uploadTimeout > 0 {
			// Not supported off a net/http server (Lambda): nothing to extend.
			err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(m.rest.uploadTimeout))
			if err != nil && !errors.Is(err, http.ErrNotSupported) {
				m.rest.logger.WarnContext(req.Context(), "upload keeps the server's read deadline", "err", err)
			}
		}
		req.Body = http.MaxBytesReader(w, req.Body, maxBody)
		mr, err := req.MultipartReader()
		if err != nil {
			return nil, "", chat.Errorf(chat.CodeBadRequest, "expected a multipart/form-data body with the file in field \"file\"")
		}
		part, err := filePart(mr)
		if err != nil {
			return nil, "", err
		}
		return part, part.Header.Get("Content-Type"), nil
	})
	if err != nil {
		m.rest.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// filePart skips to the part named "file"; other fields are ignored.
func filePart(mr *multipart.Reader) (*multipart.Part, error) {
	for {
		p, err := mr.NextPart()
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF):
			return nil, chat.Errorf(chat.CodeBadRequest, "the multipart body has no field \"file\"")
		case errors.As(err, &tooBig):
			return nil, chat.TooLarge(err)
		case err != nil:
			return nil, chat.Errorf(chat.CodeBadRequest, "malformed multipart body: %v", err)
		}
		if p.FormName() == "file" {
			return p, nil
		}
		p.Close()
	}
}

func (m *mediaRoutes) presignUpload(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.PresignInput
	if err := decodeJSON(w, req, &in); err != nil {
		m.rest.fail(w, req, err)
		return
	}
	p, err := m.svc.PresignUpload(req.Context(), user, in)
	if err != nil {
		m.rest.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (m *mediaRoutes) messageMedia(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		m.rest.fail(w, req, err)
		return
	}
	q := req.URL.Query()
	if err := onlyParams(q, "thumbnail"); err != nil {
		m.rest.fail(w, req, err)
		return
	}
	thumb := false
	if v := q.Get("thumbnail"); v != "" {
		if thumb, err = strconv.ParseBool(v); err != nil {
			m.rest.fail(w, req, chat.Errorf(chat.CodeBadRequest, "thumbnail must be true or false"))
			return
		}
	}
	u, err := m.svc.MessageMediaURL(req.Context(), user, id, thumb)
	if err != nil {
		m.rest.fail(w, req, err)
		return
	}
	// The target expires; a cached redirect would outlive it.
	w.Header().Set("Cache-Control", "private, no-store")
	// Media is user content: a browser must take it for the type it is
	// stored as, never sniff an upload into HTML or script.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.Redirect(w, req, u, http.StatusFound)
}
