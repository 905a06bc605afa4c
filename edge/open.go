package edge

import (
	"bytes"

	"github.com/redpacket/rain"
	"github.com/valyala/fasthttp"
)

var (
	campaignPrefix = []byte("/campaign/")
	openSuffix     = []byte("/open")
)

// isOpenPath matches /campaign/{id}/open as the router would: any one
// non-empty segment in place of {id}.
func isOpenPath(path []byte) bool {
	if len(path) <= len(campaignPrefix)+len(openSuffix) ||
		!bytes.HasPrefix(path, campaignPrefix) || !bytes.HasSuffix(path, openSuffix) {
		return false
	}
	return bytes.IndexByte(path[len(campaignPrefix):len(path)-len(openSuffix)], '/') < 0
}

// openCampaignID takes the id out of /campaign/{id}/open without the
// router's user values (which box a string per request).
func openCampaignID(path []byte) (int64, bool) {
	path = bytes.TrimPrefix(path, campaignPrefix)
	path = bytes.TrimSuffix(path, openSuffix)
	return rain.ParseCampaignID(path)
}

// open is POST /campaign/{id}/open, the hot path: parse, admit (limits,
// user tokens), and the engine's answer (from memory, or one Redis round
// trip), written from the stack.
func (s *Server) open(ctx *fasthttp.RequestCtx) {
	id, ok := openCampaignID(ctx.Path())
	if !ok {
		writeError(ctx, errCampaignID)
		return
	}
	p := openParsers.Get()
	defer openParsers.Put(p) // the user id is a slice of the parser's memory until the engine copies it
	user, err := parseOpenBody(p, ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	if !s.guard.admitOpen(ctx, id, user) { // who is opening, and how often (security.go)
		return
	}
	res, err := s.eng.Open(id, user)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeOutcome(ctx, res)
}
