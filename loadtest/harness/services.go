package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/internal/rediscluster"
)

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// ChildEnv is the environment of an api or consumer a runner starts: a
// minimal one, so nothing of the caller's configuration leaks in, plus vars.
func ChildEnv(vars ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	return append(env, vars...)
}

// Service is the stack's service of that name (redis, postgres, kafka).
func Service(st *stack.Stack, name string) (stack.Service, error) {
	for _, svc := range st.Services() {
		if svc.Name() == name {
			return svc, nil
		}
	}
	return nil, fmt.Errorf("no service %q", name)
}

// RedisClient is a runner's client of REDIS_ADDR: one Redis, or a
// cluster's nodes, comma-separated.
func RedisClient(addrs string) (rueidis.Client, error) {
	var list []string
	for a := range strings.SplitSeq(addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			list = append(list, a)
		}
	}
	return rueidis.NewClient(rueidis.ClientOption{InitAddress: list, DisableCache: true,
		Dialer: net.Dialer{Timeout: 2 * time.Second}, ClusterOption: rueidis.ClusterOption{ShardsRefreshInterval: 5 * time.Second}})
}

// WaitMaster waits (a minute at most) until slot has a master other than
// old that answers, with every master ready, and returns it.
func WaitMaster(ctx context.Context, c rueidis.Client, slot uint16, old string) (string, error) {
	var now string
	err := stack.Poll(ctx, time.Minute, func(ctx context.Context) error {
		shards, err := rediscluster.Shards(ctx, c)
		if err != nil {
			return err
		}
		for _, s := range shards {
			if s.Owns(slot) && s.Addr != old {
				now = s.Addr
				return rediscluster.Ready(ctx, c)
			}
		}
		return fmt.Errorf("slot %d still on %s", slot, old)
	})
	return now, err
}

// GetText GETs url (loopback) and returns the body.
func GetText(ctx context.Context, url string) (string, error) {
	if err := stack.CheckURL(url); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

var adminClient = &http.Client{Timeout: 15 * time.Second}

// Admin calls a merchant route of the api at base with the admin token
// and decodes its answer into out.
func Admin(ctx context.Context, base, token, method, path string, body []byte, want int, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := adminClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

// CreateCampaign creates a campaign open from a minute ago for 30
// minutes, of k buckets (1: one), through the api at base.
func CreateCampaign(ctx context.Context, base, token, name string, inv map[string]int64, k int) (int64, error) {
	now := time.Now().UTC()
	req := map[string]any{"name": name, "start_time": now.Add(-time.Minute).Format(time.RFC3339),
		"end_time": now.Add(30 * time.Minute).Format(time.RFC3339), "inventory": inv}
	if k > 1 {
		req["buckets"] = k
	}
	body, _ := json.Marshal(req)
	var out struct {
		ID int64 `json:"id"`
	}
	if err := Admin(ctx, base, token, http.MethodPost, "/campaign", body, http.StatusCreated, &out); err != nil {
		return 0, err
	}
	return out.ID, nil
}

// DeleteTopics deletes a run's consumer group (named as its topic), the
// topic and its dead-letter topic.
func DeleteTopics(ctx context.Context, brokers, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.DeleteGroup(ctx, topic); err != nil {
		return fmt.Errorf("group %s: %w", topic, err)
	}
	if _, err := adm.DeleteTopics(ctx, topic, topic+".dlq"); err != nil {
		return fmt.Errorf("topics %s: %w", topic, err)
	}
	return nil
}

// LogEntry is what a runner reads of a JSON log line of the api or the
// consumer.
type LogEntry struct {
	Msg         string `json:"msg"`
	Level       string `json:"level"`
	CampaignID  int64  `json:"campaign_id"`
	Repaired    int    `json:"repaired"`
	Duplicates  int    `json:"duplicates"`
	DeadLetters int    `json:"dead_letters"`
	Readded     int    `json:"readded"`
	Oversold    int    `json:"oversold"`
}

// ScanLog reads a process's log: panic is called with each line that
// tells of a panic, a fatal error or a data race, entry with each JSON
// line.
func ScanLog(path string, panic func(line string), entry func(e *LogEntry)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if l := strings.ToLower(line); strings.Contains(l, "panic") || strings.HasPrefix(line, "fatal error:") ||
			strings.Contains(line, "DATA RACE") {
			panic(Truncate(line, 300))
		}
		var e LogEntry
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &e) == nil {
			entry(&e)
		}
	}
	return sc.Err()
}

// Truncate cuts s to n bytes, marking the cut.
func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
