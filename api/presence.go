package api

import (
	"net/http"

	"github.com/parleychat/parley/internal/chat"
)

func (r *REST) presence(w http.ResponseWriter, req *http.Request, user int64) {
	q := req.URL.Query()
	if err := onlyParams(q, "user_ids"); err != nil {
		r.fail(w, req, err)
		return
	}
	ids, err := chat.ParseUserIDs(q.Get("user_ids"))
	if err != nil {
		r.fail(w, req, err)
		return
	}
	ps, err := r.svc.Presence(req.Context(), user, ids)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": ps})
}

func (r *REST) presenceSettings(w http.ResponseWriter, req *http.Request, user int64) {
	if err := onlyParams(req.URL.Query()); err != nil {
		r.fail(w, req, err)
		return
	}
	st, err := r.svc.PresenceSettingsOf(req.Context(), user)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (r *REST) updatePresenceSettings(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.PresenceSettings
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	st, err := r.svc.UpdatePresenceSettings(req.Context(), user, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
