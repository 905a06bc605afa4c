package edge

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
)

// User tokens: who is opening. With USER_TOKEN_SECRET set, an open carries
// a token the merchant's app signed for that user, that campaign and a
// short while, in the header
//
//	Authorization: Bearer v1.<campaign id>.<expiry>.<user>.<mac>
//
// where <campaign id> and <expiry> (unix seconds) are canonical decimals,
// <user> is the user id in unpadded base64url (RFC 4648, 5), and <mac> is
// the unpadded base64url HMAC-SHA256, under the secret, of everything
// before the last dot ("v1.<campaign id>.<expiry>.<user>"). The body stays
// {"user_id":"..."} and must name the token's user: the api opens for the
// user the token names, so nobody can open as someone else, and a 409's
// amount goes only to its owner. SignUserToken makes one; it is what the
// merchant's app runs (in any language: the format is the contract).

const userTokenVersion = "v1"

// strictBase64 refuses the non-canonical encodings of a value (non-zero
// padding bits), so a token has one spelling.
var strictBase64 = base64.RawURLEncoding.Strict()

// SignUserToken returns the token of userID for campaignID, valid until
// expiry (to the second), signed with secret.
func SignUserToken(secret []byte, campaignID int64, userID string, expiry time.Time) string {
	b := make([]byte, 0, 64+base64.RawURLEncoding.EncodedLen(len(userID)))
	b = append(b, userTokenVersion+"."...)
	b = strconv.AppendInt(b, campaignID, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, expiry.Unix(), 10)
	b = append(b, '.')
	b = base64.RawURLEncoding.AppendEncode(b, []byte(userID))
	m := hmac.New(sha256.New, secret)
	m.Write(b)
	b = append(b, '.')
	return string(base64.RawURLEncoding.AppendEncode(b, m.Sum(nil)))
}

// errUserToken is the one answer to every token problem (missing, forged,
// for another campaign or user, expired): which one it was is not told.
var errUserToken = rain.Errorf(rain.EUNAUTHORIZED, "missing, invalid or expired user token")

// userTokens verifies tokens under one or more secrets (the first current,
// the others still accepted while the merchant's apps move over).
type userTokens struct {
	macs   []sync.Pool // of *tokenMAC, one pool per secret
	maxTTL int64       // seconds
}

// tokenMAC is a keyed HMAC with room for its sum, reused across requests.
type tokenMAC struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newUserTokens(secrets []string, maxTTL time.Duration) *userTokens {
	if len(secrets) == 0 {
		return nil
	}
	u := &userTokens{macs: make([]sync.Pool, len(secrets)), maxTTL: int64(maxTTL / time.Second)}
	for i, s := range secrets {
		key := []byte(s)
		u.macs[i].New = func() any { return &tokenMAC{h: hmac.New(sha256.New, key)} }
	}
	return u
}

// The longest a token may be: a 128-byte user id and the rest.
const maxUserToken = 2 + 1 + 19 + 1 + 19 + 1 + (rain.MaxUserIDLen*4+2)/3 + 1 + (sha256.Size*4+2)/3

// verify reports whether tok is a token of user for campaign, valid at
// now. It allocates nothing.
func (u *userTokens) verify(tok []byte, campaign int64, user []byte, now time.Time) bool {
	if len(tok) > maxUserToken || !bytes.HasPrefix(tok, []byte(userTokenVersion+".")) {
		return false
	}
	last := bytes.LastIndexByte(tok, '.')
	if last <= len(userTokenVersion) {
		return false
	}
	signed, mac64 := tok[:last], tok[last+1:]
	rest := signed[len(userTokenVersion)+1:]
	var parts [3][]byte // campaign id, expiry, user
	for i := range 2 {
		j := bytes.IndexByte(rest, '.')
		if j < 0 {
			return false
		}
		parts[i], rest = rest[:j], rest[j+1:]
	}
	parts[2] = rest
	if len(rest) == 0 {
		return false
	}
	if id, ok := rain.ParseCampaignID(parts[0]); !ok || id != campaign {
		return false
	}
	exp, ok := rain.ParseCampaignID(parts[1]) // the same canonical positive decimal
	if nowS := now.Unix(); !ok || exp <= nowS || exp-nowS > u.maxTTL {
		return false
	}
	var ubuf [rain.MaxUserIDLen + 3]byte
	if base64.RawURLEncoding.DecodedLen(len(parts[2])) > len(ubuf) {
		return false
	}
	n, err := strictBase64.Decode(ubuf[:], parts[2])
	if err != nil || !bytes.Equal(ubuf[:n], user) {
		return false
	}
	var got [sha256.Size + 3]byte
	if len(mac64) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return false
	}
	if n, err := strictBase64.Decode(got[:], mac64); err != nil || n != sha256.Size {
		return false
	}
	match := false
	for i := range u.macs {
		m := u.macs[i].Get().(*tokenMAC)
		m.h.Reset()
		m.h.Write(signed)
		sum := m.h.Sum(m.sum[:0])
		match = hmac.Equal(sum, got[:sha256.Size]) || match
		u.macs[i].Put(m)
	}
	return match
}

var userTokensRefused = metrics.NewCounter(`rain_user_tokens_refused_total`)
