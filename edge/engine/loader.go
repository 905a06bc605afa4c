package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
	// KeyTTL is how long after a campaign's end its keys expire (0: never);
	// after its creation when it was created already ended (keysExpireAt).
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
	id, err := l.identity(ctx, k)
	if err != nil {
		return busyIf(err)
	}
	foreign := id.Loaded && !sameRow(id, c)
	if !foreign {
		if c.K() == 1 {
			if id.Loaded {
				return busyIf(l.adopt(ctx, k, id, c))
			}
		} else if h, err := lua.CheckLayout(ctx, l.Redis, mustLayout(l.Keys, c)); err != nil || h.Whole() && !h.Frozen {
			if err == nil {
				err = l.adopt(ctx, k, id, c)
			}
			return busyIf(err) // every part there (a part missing: rebuilt below)
		}
	}
	unlock, err := l.lock(ctx, k)
	if err != nil {
		return err
	}
	defer unlock()
	if foreign {
		if err := l.clearForeign(ctx, k, c); err != nil {
			return busyIf(err)
		}
	}
	err = l.load(ctx, c)
	if err == nil {
		err = busyIf(lua.SetRow(ctx, l.Redis, k, rowOf(c)))
	}
	return err
}

// rowOf is the identity of c's row that its keys carry: its created_at,
// in µs.
func rowOf(c *rain.Campaign) string { return strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) }

// sameRow reports whether keys of identity id were loaded from c's row:
// the recorded row; for keys loaded before rows were recorded, the same
// start and bucket count.
func sameRow(id lua.Identity, c *rain.Campaign) bool {
	if id.Row != "" {
		return id.Row == rowOf(c)
	}
	return id.StartMs == c.StartTime.UnixMilli() && id.Buckets == c.K()
}

// identity reads what campaign k's keys say of their row.
func (l *Loader) identity(ctx context.Context, k *lua.Keys) (lua.Identity, error) {
	var out [1]lua.Identity
	err := lua.ReadIdentities(ctx, l.Redis, []*lua.Keys{k}, out[:])
	return out[0], err
}

// adopt records c's row in keys loaded before rows were recorded.
func (l *Loader) adopt(ctx context.Context, k *lua.Keys, id lua.Identity, c *rain.Campaign) error {
	if id.Row != "" {
		return nil
	}
	return lua.SetRow(ctx, l.Redis, k, rowOf(c))
}

// clearForeign deletes the keys under c's id that another row left (a
// database restored from a backup hands ids out again), once more checked
// under the loading lock: counted and logged, then c is laid out afresh.
func (l *Loader) clearForeign(ctx context.Context, k *lua.Keys, c *rain.Campaign) error {
	id, err := l.identity(ctx, k)
	if err != nil || !id.Loaded || sameRow(id, c) {
		return err
	}
	if err := lua.ClearCampaign(ctx, l.Redis, l.Keys, c.ID, id.Buckets); err != nil {
		return err
	}
	keysReplaced.Inc()
	l.Log.Warn("redis held another row's keys under this campaign id (a restored database?): cleared, laid out from postgres",
		"campaign_id", c.ID, "redis_row", id.Row, "redis_start_ms", id.StartMs, "redis_buckets", id.Buckets, "row", rowOf(c))
	return nil
}

// load rebuilds the Redis state of c, under the loading lock, unless it is
// already there.
func (l *Loader) load(ctx context.Context, c *rain.Campaign) error {
	k := l.Keys.Of(c.ID)
	if c.K() == 1 {
		if ok, err := lua.Exists(ctx, l.Redis, k); err != nil || ok {
			return busyIf(err)
		}
	}
	defer redisLoad.UpdateDuration(time.Now())
	if c.K() > 1 {
		return l.loadBuckets(ctx, c)
	}

	// The persisted claims go to Redis in chunks as PostgreSQL streams them:
	// a campaign of millions of claims is never held in memory.
	restored := 0
	chunk := make(map[string]string, lua.RestoreChunk)
	flush := func() error {
		if err := lua.RestoreClaims(ctx, l.Redis, k, chunk); err != nil {
			return busyIf(err)
		}
		restored += len(chunk)
		clear(chunk)
		return nil
	}
	err := l.Store.ForEachClaim(ctx, c.ID, func(user string, amount int64, at time.Time) error {
		chunk[user] = lua.ClaimValue(amount, at.UnixMilli())
		if len(chunk) == lua.RestoreChunk {
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
		if err := l.expire(ctx, k, c); err != nil {
			l.Log.Warn("campaign loaded; its keys' expiry not set (the catalog sweep sets it after the end)",
				"campaign_id", c.ID, "err", err)
		}
	}
	return nil
}

// loadBuckets is Load for a bucketed campaign (under the loading lock):
// the persisted claims are restored into their users' buckets, the rest of
// the stock dealt into the buckets and the pool (lua.LoadBuckets), the
// home's meta written last. A campaign partly in Redis (a shard lost its
// data, or a load cut off between the buckets and the home) is frozen,
// the claims its surviving buckets hold are added to the persisted ones,
// and it is laid out afresh (lua.Rebuild): nobody who holds a packet,
// persisted or not yet, can get a second. A load streams the persisted
// claims into Redis as PostgreSQL gives them; only a rebuild (a shard
// lost, rare) holds them in memory, with the survivors'.
func (l *Loader) loadBuckets(ctx context.Context, c *rain.Campaign) error {
	lay := mustLayout(l.Keys, c)
	totals := make(map[int64]int64, len(c.Inventory))
	for _, st := range c.Inventory {
		totals[st.Amount] = st.Total
	}
	start, end := c.StartTime.UnixMilli(), c.EndTime.UnixMilli()
	restored := 0
	var pgErr error // PostgreSQL's, as opposed to Redis's
	loaded, err := lua.LoadBucketsFrom(ctx, l.Redis, lay, start, end, totals, func(add func(user, value string) error) error {
		redisFailed := false
		err := l.Store.ForEachClaim(ctx, c.ID, func(user string, amount int64, at time.Time) error {
			restored++
			err := add(user, lua.ClaimValue(amount, at.UnixMilli()))
			redisFailed = err != nil
			return err
		})
		if err != nil && !redisFailed {
			pgErr = err
		}
		return err
	})
	rebuilt := false
	if errors.Is(err, lua.ErrPartial) {
		claims := make(map[string]string)
		err = l.Store.ForEachClaim(ctx, c.ID, func(user string, amount int64, at time.Time) error {
			claims[user] = lua.ClaimValue(amount, at.UnixMilli())
			return nil
		})
		if err != nil {
			return fmt.Errorf("campaign %d: read claims: %w", c.ID, err)
		}
		err = l.rebuild(ctx, lay, start, end, totals, claims)
		loaded, rebuilt, restored = err == nil, true, len(claims)
	}
	switch {
	case pgErr != nil && rain.ErrorCode(pgErr) == rain.EBUSY:
		return pgErr
	case pgErr != nil:
		return fmt.Errorf("campaign %d: read claims: %w", c.ID, pgErr)
	case err != nil:
		return busyIf(err)
	}
	if loaded {
		repairs.Inc()
		l.Log.Info("campaign loaded into redis", "campaign_id", c.ID, "buckets", lay.K(),
			"restored_claims", restored, "rebuilt", rebuilt)
		if err := l.expireKeys(ctx, lay.ExpiringKeys(), c); err != nil {
			l.Log.Warn("campaign loaded; its keys' expiry not set (the catalog sweep sets it after the end)",
				"campaign_id", c.ID, "err", err)
		}
	}
	return nil
}

// mustLayout is the layout of c, whose bucket count Validate or the
// database's CHECK bounded.
func mustLayout(ks lua.Keyspace, c *rain.Campaign) *lua.Layout {
	l, err := ks.Layout(c.ID, c.K())
	if err != nil {
		panic(err)
	}
	return l
}

// rebuild lays out afresh a bucketed campaign partly in Redis: frozen
// first (its buckets answer BUSY), then every claim a surviving bucket
// holds joins claims, then lua.Rebuild.
func (l *Loader) rebuild(ctx context.Context, lay *lua.Layout, start, end int64, totals map[int64]int64, claims map[string]string) error {
	if _, err := lua.Freeze(ctx, l.Redis, lay); err != nil {
		return err
	}
	for _, b := range lay.Buckets {
		err := lua.ScanClaims(ctx, l.Redis, b.Keys, func(user string, amount, at int64) error {
			if _, ok := claims[user]; !ok {
				claims[user] = lua.ClaimValue(amount, at)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	l.Log.Warn("bucketed campaign partly missing from redis: frozen and laid out afresh", "campaign_id", lay.ID)
	return lua.Rebuild(ctx, l.Redis, lay, start, end, totals, claims)
}

// expire sets the campaign's keys to expire KeyTTL after its end (or its
// creation, keysExpireAt). The claims hash exists only once someone
// claimed; the catalog's sweep sets its expiry after the end.
func (l *Loader) expire(ctx context.Context, k *lua.Keys, c *rain.Campaign) error {
	return l.expireKeys(ctx, []string{k.Meta(), k.Stock(), k.Claims()}, c)
}

// expireKeys sets keys of c to expire at keysExpireAt.
func (l *Loader) expireKeys(ctx context.Context, keys []string, c *rain.Campaign) error {
	if l.KeyTTL <= 0 {
		return nil
	}
	at := keysExpireAt(c.EndTime.UnixMilli(), c.CreatedAt.UnixMilli(), l.KeyTTL)
	cmds := make(rueidis.Commands, len(keys))
	for i, key := range keys {
		cmds[i] = l.Redis.B().Pexpireat().Key(key).MillisecondsTimestamp(at).Build()
	}
	for _, r := range l.Redis.DoMulti(ctx, cmds...) {
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
