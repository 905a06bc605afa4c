// Package lua is the Redis data model of the service: the key scheme, the
// Lua scripts that read and change it, and their typed Go wrappers. The
// story (what each key holds, how claim.lua decides an open, how a hot
// campaign's stock is dealt over buckets and moved between them) is in
// docs/design.md, sections "Redis model" and "Hot campaigns".
//
// The files, by concept:
//
//	keys.go       the key scheme, the one place a key is spelled (Keyspace, Keys, Layout, Bucket)
//	scripts.go    the embedded .lua sources and their script objects
//	claim.go      deciding opens: Claim, ClaimBatch, ClaimBucket, their arguments and replies
//	campaign.go   one campaign's (or one bucket's) keys: load, state, claims, end, added stock
//	layout.go     bucket arithmetic (BucketOf, bucket tags, Split, Deal) and reading a campaign's K
//	buckets.go    a bucketed campaign as a whole: load, state, health, freeze, rebuild, end, re-add
//	transfer.go   the rebalancing lease, stock transfers under it, the global sold-out check
//	rebalance.go  Rebalance and SweepBuckets: the moves the api and the reconciler ask for
//	clear.go      clearing a tool's own keyspace
//
// Given K = 1, a bucketed call is its one-campaign counterpart where it has
// one (ClaimBucket is ClaimBatch, ReadBuckets is ReadState, ...), so a
// campaign of one bucket keeps the plain layout and path.
package lua

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"strings"

	"github.com/redis/rueidis"
)

// The scripts of one campaign's keys (campaign.go, claim.go).
var (
	//go:embed claim.lua
	claimSrc string
	//go:embed load.lua
	loadSrc string
	//go:embed readd.lua
	readdSrc string

	// One script object each for the life of the process: Exec sends
	// EVALSHA and falls back to EVAL by itself after NOSCRIPT (a restarted
	// or failed-over Redis has an empty script cache).
	claimScript = newScript(claimSrc)
	loadScript  = newScript(loadSrc)
	readdScript = newScript(withPrelude(readdSrc))
)

// The merchant's scripts: ending a campaign now and adding stock (campaign.go).
var (
	//go:embed end.lua
	endSrc string
	//go:embed restock.lua
	restockSrc string

	endScript     = newScript(withPrelude(endSrc))
	restockScript = newScript(restockSrc)
	// setRowScript records the row a loaded campaign's keys belong to.
	setRowScript = newScript("#!lua\nif redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'row', ARGV[1]) end return 0")
)

// The scripts of bucketed campaigns (claim.go, buckets.go, transfer.go);
// each touches one slot.
var (
	//go:embed bucket_take.lua
	bucketTakeSrc string
	//go:embed bucket_credit.lua
	bucketCreditSrc string
	//go:embed bucket_lock.lua
	bucketLockSrc string
	//go:embed bucket_state.lua
	bucketStateSrc string
	//go:embed bucket_final.lua
	bucketFinalSrc string
	//go:embed bucket_pool_add.lua
	bucketPoolAddSrc string
	//go:embed bucket_load.lua
	bucketLoadSrc string
	//go:embed bucket_freeze.lua
	bucketFreezeSrc string
	//go:embed bucket_burn.lua
	bucketBurnSrc string
	//go:embed stock_count.lua
	stockCountSrc string

	bucketClaimScript   = newScript(bucketClaim(claimSrc))
	bucketTakeScript    = newScript(withPrelude(bucketTakeSrc))
	bucketCreditScript  = newScript(withPrelude(bucketCreditSrc))
	bucketLockScript    = newScript(withPrelude(bucketLockSrc))
	bucketStateScript   = newScript(withPrelude(bucketStateSrc))
	bucketFinalScript   = newScript(withPrelude(bucketFinalSrc))
	bucketPoolAddScript = newScript(bucketPoolAddSrc)
	bucketLoadScript    = newScript(bucketLoadSrc)
	bucketFreezeScript  = newScript(bucketFreezeSrc)
	bucketBurnScript    = newScript(withPrelude(bucketBurnSrc))
	stockCountScript    = newScript(stockCountSrc)
	bucketUnlockScript  = newScript("#!lua\nif redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
)

// bucketClaim is claim.lua for one bucket: the same source with its BUCKET
// switch on, so the checks, the draw and the write-back are written once.
func bucketClaim(src string) string {
	const off, on = "\nlocal BUCKET = false\n", "\nlocal BUCKET = true\n"
	if strings.Count(src, off) != 1 {
		panic("claim.lua: want one line `local BUCKET = false`")
	}
	return strings.Replace(src, off, on, 1)
}

// preludeSrc holds the helpers of the scripts that check a slot's lease
// or take a packet out of a stock (prelude.lua).
//
//go:embed prelude.lua
var preludeSrc string

// withPrelude is src with prelude.lua in front, after the shebang line
// where src has one: Redis reads a script's flags only on its first line.
// The SHA is the whole text's, so EVALSHA and its EVAL fallback send the
// same script.
func withPrelude(src string) string {
	if !strings.HasPrefix(src, "#!") {
		return preludeSrc + src
	}
	shebang, body, _ := strings.Cut(src, "\n")
	return shebang + "\n" + preludeSrc + body
}

// script is a Lua script that can also run many times in one round trip
// over the slots of a campaign (EVALSHA pipelined; a node without it in
// its cache gets EVAL for that call alone), unlike rueidis's ExecMulti,
// which first loads the script on every node.
type script struct {
	*rueidis.Lua
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{Lua: rueidis.NewLuaScript(src), src: src, sha: hex.EncodeToString(sum[:])}
}

func (s *script) multi(ctx context.Context, c rueidis.Client, execs []rueidis.LuaExec) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
	}
	res := c.DoMulti(ctx, cmds...)
	for i, r := range res {
		if err, ok := rueidis.IsRedisErr(r.Error()); ok && err.IsNoScript() {
			res[i] = s.Exec(ctx, c, execs[i].Keys, execs[i].Args)
		}
	}
	return res
}
