package api

import (
	"net/http"

	"github.com/parleychat/parley/internal/chat"
)

// Group routes: create, members (add, remove, leave), title, roles.
func registerGroups(r *REST) {
	r.Handle("POST "+Prefix+"/groups", r.authed(r.createGroup))
	r.Handle("GET "+Prefix+"/groups/{id}/members", r.authed(r.groupMembers))
	r.Handle("POST "+Prefix+"/groups/{id}/members", r.authed(r.addMembers))
	r.Handle("DELETE "+Prefix+"/groups/{id}/members/{user_id}", r.authed(r.removeMember))
	r.Handle("PUT "+Prefix+"/groups/{id}/members/{user_id}/role", r.authed(r.setRole))
	r.Handle("PATCH "+Prefix+"/groups/{id}", r.authed(r.renameGroup))
}

func (r *REST) createGroup(w http.ResponseWriter, req *http.Request, user int64) {
	var in chat.GroupInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	c, err := r.svc.CreateGroup(req.Context(), user, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (r *REST) groupMembers(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	ms, err := r.svc.GroupMembers(req.Context(), user, id)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": ms})
}

func (r *REST) addMembers(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	var in chat.MembersInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	c, err := r.svc.AddMembers(req.Context(), user, id, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// removeMember removes a member, or, with the caller's own id, leaves.
func (r *REST) removeMember(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	target, err := pathUserID(req)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	if err := r.svc.RemoveMember(req.Context(), user, id, target); err != nil {
		r.fail(w, req, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *REST) setRole(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	target, err := pathUserID(req)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	var in chat.RoleInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	c, err := r.svc.SetRole(req.Context(), user, id, target, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (r *REST) renameGroup(w http.ResponseWriter, req *http.Request, user int64) {
	id, err := pathUUID(req, "id")
	if err != nil {
		r.fail(w, req, err)
		return
	}
	var in chat.RenameInput
	if err := decodeJSON(w, req, &in); err != nil {
		r.fail(w, req, err)
		return
	}
	c, err := r.svc.RenameGroup(req.Context(), user, id, in)
	if err != nil {
		r.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}
