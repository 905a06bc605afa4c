package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain/edge"
)

// TestBenchLuaTokens runs wrk with bench.lua in mode tokens for a second
// against a server on loopback that checks every request's token against
// the user its body names.
func TestBenchLuaTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("needs wrk")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("needs wrk")
	}
	secret, expiry := []byte(strings.Repeat("s", 32)), time.Now().Add(time.Hour)
	const users = 2000
	path := filepath.Join(t.TempDir(), "tokens.txt")
	if err := tokenFile(path, secret, 7, "u", users, expiry); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen, bad := map[string]int{}, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			User string `json:"user_id"`
		}
		err := json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || r.Method != http.MethodPost || r.URL.Path != "/campaign/7/open" ||
			r.Header.Get("Authorization") != "Bearer "+edge.SignUserToken(secret, 7, body.User, expiry) {
			bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		seen[body.User]++
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, _, err := runWrk(ctx, "../wrk/bench.lua", Load{URL: srv.URL + "/campaign/7/open", Mode: "tokens", Tokens: path,
		Threads: 2, Connections: 4, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if bad > 0 || w.Statuses["401"] > 0 || w.Statuses["200"] == 0 {
		t.Fatalf("%d requests without their user's token; statuses %v", bad, w.Statuses)
	}
	halves, repeats := [2]int{}, 0
	for u, n := range seen {
		halves[map[bool]int{true: 0, false: 1}[u < "u1000"]]++
		repeats += n - 1
	}
	if halves[0] == 0 || halves[1] == 0 {
		t.Errorf("users by half of the file: %v: each thread takes its own half", halves)
	}
	// wrk makes one request in its first thread's init that it never sends:
	// its user is sent first on that thread's second pass.
	if repeats > 0 && w.Reused < int64(repeats-1) {
		t.Errorf("the server saw %d repeated users, wrk reports %d reused", repeats, w.Reused)
	}
	t.Logf("%d requests, %d users, %d repeats, %d reused", w.Requests, len(seen), repeats, w.Reused)
}
