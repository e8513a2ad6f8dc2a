package api

import (
	"net/http"

	"github.com/parleychat/parley/internal/chat"
)

// Blocking and reporting: the REST side of the moderation use cases.

func (r *REST) block(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.BlockInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	b, err := r.svc.Block(req.Context(), user, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (r *REST) unblock(w http.ResponseWriter, req *http.Request, user int64) {
	other, err := pathUserID(req)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	if err := r.svc.Unblock(req.Context(), user, other); err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "user_id": other})
}

func (r *REST) listBlocks(w http.ResponseWriter, req *http.Request, user int64) {
	if err := onlyParams(req.URL.Query()); err != nil {
		r.fail(w, req, err)
		return
	}
	bs, err := r.svc.Blocks(req.Context(), user)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": bs})
}

func (r *REST) report(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.ReportInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	rep, err := r.svc.Report(req.Context(), user, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusCreated, rep)
}
