package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/redpacket/rain/edge"
)

// The identity phases send, with each open, a user token the merchant's
// app would have signed (edge.SignUserToken). wrk cannot sign at the rate
// it sends, so the bench signs beforehand: a file of "<user> <token>\n"
// lines, one user each, every line of the same length (the user ids are
// zero-padded, so the tokens are too), which lets each wrk thread seek to
// its own slice and take line i at offset i × width (bench.lua, mode
// tokens) without parsing anything per request.

// Identity settings of the api with the check and limits on. The user
// limit is compose.yaml's (5 opens/s per user id, buckets of 2 s); each
// user of the phase opens once, so it never answers 429: what is measured
// is its cost. The per-IP limit stays off: all of wrk's load comes from
// one loopback address, which a per-IP limit would cut to its rate.
const (
	identityUserRate  = 5
	identityBurstSecs = 2
	// tokenMaxTTL is the api's USER_TOKEN_MAX_TTL in the phase, tokenTTL
	// how long the bench's tokens are valid: the rest of the run, within it.
	tokenMaxTTL = time.Hour
	tokenTTL    = 30 * time.Minute
	// maxSignedUsers bounds a token file (about 100 bytes a line).
	maxSignedUsers = 8_000_000
)

// newSecret is a random USER_TOKEN_SECRET of the run: 32 random bytes in
// hex (64 bytes; the api wants at least 32).
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// identityEnv is the api environment, on top of the configuration it
// extends, that turns the user token check and the limits on.
func identityEnv(secret string) []string {
	return []string{"USER_TOKEN_SECRET=" + secret, "USER_TOKEN_MAX_TTL=" + tokenMaxTTL.String(),
		"RATE_LIMIT_USER=" + strconv.Itoa(identityUserRate), "RATE_LIMIT_BURST=" + strconv.Itoa(identityBurstSecs),
		"RATE_LIMIT_IP=0"}
}

// identityText is identityEnv as the report shows it (the key not shown).
func identityText() string {
	return fmt.Sprintf("USER_TOKEN_SECRET=<a random 32-byte key of the run> USER_TOKEN_MAX_TTL=%s RATE_LIMIT_USER=%d RATE_LIMIT_BURST=%d RATE_LIMIT_IP=0",
		tokenMaxTTL, identityUserRate, identityBurstSecs)
}

// tokenUsers is how many users a token file needs for a run of d at up to
// rps requests/s: half as many again, and at least 1000, so that no thread
// runs out (a thread that does wraps around and its repeats are counted).
func tokenUsers(rps float64, d time.Duration) int {
	n := rps*(d+time.Second).Seconds()*1.5 + 1000
	if math.IsNaN(n) || n > maxSignedUsers {
		return maxSignedUsers
	}
	return int(n)
}

// writeTokens writes n lines "<user> <token>\n" for campaign, users
// <prefix><i> with i zero-padded to the width of n-1, each token signed
// with secret and valid until expiry. Every line has the same length.
func writeTokens(w io.Writer, secret []byte, campaign int64, prefix string, n int, expiry time.Time) error {
	if n < 1 {
		return errors.New("tokens: want at least one user")
	}
	digits := len(strconv.Itoa(n - 1))
	bw := bufio.NewWriterSize(w, 1<<20)
	user := make([]byte, 0, len(prefix)+digits)
	width := -1
	for i := range n {
		user = append(user[:0], prefix...)
		s := strconv.Itoa(i)
		for range digits - len(s) {
			user = append(user, '0')
		}
		user = append(user, s...)
		tok := edge.SignUserToken(secret, campaign, string(user), expiry)
		if l := len(user) + 1 + len(tok) + 1; width < 0 {
			width = l
		} else if l != width {
			return fmt.Errorf("tokens: line %d is %d bytes, not %d", i, l, width)
		}
		bw.Write(user)
		bw.WriteByte(' ')
		bw.WriteString(tok)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// tokenFile writes a token file at path (see writeTokens).
func tokenFile(path string, secret []byte, campaign int64, prefix string, n int, expiry time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeTokens(f, secret, campaign, prefix, n, expiry); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
