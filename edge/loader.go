package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
)

// Loader puts campaigns from PostgreSQL into Redis: right after a create,
// on boot for every live campaign Redis lacks, and when an open finds a
// campaign missing from Redis (a create interrupted between PostgreSQL and
// Redis, or a Redis that lost its data).
type Loader struct {
	Store *postgres.Store
	Redis rueidis.Client
	Keys  lua.Keyspace
	Log   *slog.Logger
	// KeyTTL is how long after a campaign's end its keys expire (0: never).
	KeyTTL time.Duration
}

var errRebuilding = rain.Errorf(rain.EBUSY, "campaign is being loaded by another process")

// Ensure makes campaign id visible to opens if it exists in PostgreSQL and
// is missing from Redis. It returns a rain.ENOTFOUND error when there is no
// such campaign and a rain.EBUSY one when another process is loading it.
func (l *Loader) Ensure(ctx context.Context, id int64) error {
	c, err := l.campaign(ctx, id)
	if err != nil {
		return err
	}
	return l.Load(ctx, c)
}

// campaign reads a campaign from PostgreSQL, timed.
func (l *Loader) campaign(ctx context.Context, id int64) (*rain.Campaign, error) {
	defer pgRead.UpdateDuration(time.Now())
	return l.Store.Campaign(ctx, id)
}

// Load rebuilds the Redis state of c unless it is already there. The claims
// persisted in claim_log are restored into the claims hash first, so a user
// who has a packet cannot get a second; the stock becomes the total less
// every claim the claims hash then holds; the meta hash comes last (load.lua),
// which is what makes the campaign visible. A Redis lock keeps two
// processes from rebuilding the same campaign at once.
func (l *Loader) Load(ctx context.Context, c *rain.Campaign) error {
	k := l.Keys.Of(c.ID)
	if ok, err := lua.Exists(ctx, l.Redis, k); err != nil || ok {
		return busyIf(err)
	}
	unlock, err := l.lock(ctx, k)
	if err != nil {
		return err
	}
	defer unlock()
	defer redisLoad.UpdateDuration(time.Now())

	// The persisted claims go to Redis in chunks as PostgreSQL streams them:
	// a campaign of millions of claims is never held in memory.
	restored := 0
	chunk := make(map[string]string, restoreChunk)
	flush := func() error {
		if err := lua.RestoreClaims(ctx, l.Redis, k, chunk); err != nil {
			return busyIf(err)
		}
		restored += len(chunk)
		clear(chunk)
		return nil
	}
	err = l.Store.ForEachClaim(ctx, c.ID, func(user string, amount int64, at time.Time) error {
		chunk[user] = lua.ClaimValue(amount, at.UnixMilli())
		if len(chunk) == restoreChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if rain.ErrorCode(err) == rain.EBUSY {
		return err
	}
	if err != nil {
		return fmt.Errorf("campaign %d: read claims: %w", c.ID, err)
	}
	remaining := make(map[int64]int64, len(c.Inventory))
	for _, st := range c.Inventory {
		remaining[st.Amount] = st.Total
	}
	if restored > 0 { // a rebuild: count what Redis now holds
		err = lua.ScanClaims(ctx, l.Redis, k, func(_ string, amount, _ int64) error {
			remaining[amount] = max(0, remaining[amount]-1)
			return nil
		})
		if err != nil {
			return busyIf(err)
		}
	}
	loaded, err := lua.Load(ctx, l.Redis, k, c.StartTime.UnixMilli(), c.EndTime.UnixMilli(), remaining)
	if err != nil {
		return busyIf(err)
	}
	if loaded {
		repairs.Inc()
		l.Log.Info("campaign loaded into redis", "campaign_id", c.ID, "restored_claims", restored)
		if err := l.expire(ctx, k, c.EndTime); err != nil {
			l.Log.Warn("campaign loaded; its keys' expiry not set (the catalog sweep sets it after the end)",
				"campaign_id", c.ID, "err", err)
		}
	}
	return nil
}

// restoreChunk is how many persisted claims go to Redis at a time.
const restoreChunk = 1000

// expire sets the campaign's keys to expire KeyTTL after its end. The
// claims hash exists only once someone claimed; the catalog's sweep sets
// its expiry after the end.
func (l *Loader) expire(ctx context.Context, k *lua.Keys, end time.Time) error {
	if l.KeyTTL <= 0 {
		return nil
	}
	at := end.Add(l.KeyTTL).UnixMilli()
	for _, r := range l.Redis.DoMulti(ctx,
		l.Redis.B().Pexpireat().Key(k.Meta()).MillisecondsTimestamp(at).Build(),
		l.Redis.B().Pexpireat().Key(k.Stock()).MillisecondsTimestamp(at).Build(),
		l.Redis.B().Pexpireat().Key(k.Claims()).MillisecondsTimestamp(at).Build()) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// lock takes the campaign's loading key for this process, or fails with EBUSY.
func (l *Loader) lock(ctx context.Context, k *lua.Keys) (unlock func(), err error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	key := k.Loading()
	err = l.Redis.Do(ctx, l.Redis.B().Set().Key(key).Value(token).Nx().Px(30*time.Second).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return nil, errRebuilding
	}
	if err != nil {
		return nil, busyIf(err)
	}
	return func() {
		// Delete the lock only if it is still ours.
		_ = unlockScript.Exec(context.WithoutCancel(ctx), l.Redis, []string{key}, []string{token}).Error()
	}, nil
}

var unlockScript = rueidis.NewLuaScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// LoadLive loads every campaign whose window has not ended and which Redis
// lacks; run at boot.
func (l *Loader) LoadLive(ctx context.Context) error {
	ids, err := l.Store.LiveCampaignIDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := l.Ensure(ctx, id); err != nil && rain.ErrorCode(err) != rain.EBUSY {
			return fmt.Errorf("campaign %d: %w", id, err)
		}
	}
	return nil
}

// busyIf marks a Redis failure as EBUSY (the caller answers 503). The
// Redis error is the cause, for the logs; the answer says only "redis
// unavailable".
func busyIf(err error) error {
	if err == nil {
		return nil
	}
	return &rain.Error{Code: rain.EBUSY, Message: "redis unavailable", Cause: err}
}
