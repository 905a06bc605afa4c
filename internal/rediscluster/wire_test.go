package rediscluster

import (
	"math/rand/v2"
	"testing"
)

// stream holds every kind of reply, with payloads that look like errors
// (which must not count) and 2 MOVED, 1 ASK, 1 TRYAGAIN, 1 CLUSTERDOWN and
// 1 LOADING error replies.
const stream = "+OK\r\n" +
	"-MOVED 3999 127.0.0.1:7002\r\n" +
	":42\r\n" +
	"$14\r\n-MOVED 1 a:1\r\n\r\n" + // a bulk string: data
	"$-1\r\n" +
	"*3\r\n$3\r\nfoo\r\n-ASK 3999 127.0.0.1:7003\r\n$0\r\n\r\n" +
	"%1\r\n+k\r\n=15\r\ntxt:-TRYAGAIN x\r\n" + // a verbatim string: data
	"-TRYAGAIN Multiple keys request during rehashing of slot\r\n" +
	"_\r\n,1.5\r\n#t\r\n(12345678901234567890\r\n" +
	"!21\r\nCLUSTERDOWN in a blob\r\n" + // a blob error: not one the cluster sends
	"-CLUSTERDOWN The cluster is down\r\n" +
	"-ERR unknown command\r\n" +
	"-LOADING Redis is loading the dataset in memory\r\n" +
	">2\r\n$7\r\nmessage\r\n$6\r\n-MOVED\r\n" +
	"-MOVED 12 127.0.0.1:7001\r\n" +
	"-ASKING\r\n" // not "ASK "

var streamWant = map[string]uint64{KindMoved: 2, KindAsk: 1, KindTryAgain: 1, KindClusterDown: 1, KindLoading: 1}

func counts() map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range errorPrefixes {
		out[p.kind] = ErrorReplies(p.kind)
	}
	return out
}

func checkDelta(t *testing.T, how string, before map[string]uint64, times uint64) {
	t.Helper()
	after := counts()
	for _, p := range errorPrefixes {
		if d := after[p.kind] - before[p.kind]; d != streamWant[p.kind]*times {
			t.Errorf("%s: %s counted %d, want %d", how, p.kind, d, streamWant[p.kind]*times)
		}
	}
}

// TestReplyScanner feeds the stream whole, a byte at a time, and in random
// pieces: the counts never depend on where reads cut it.
func TestReplyScanner(t *testing.T) {
	before := counts()
	var s replyScanner
	s.feed([]byte(stream))
	checkDelta(t, "whole", before, 1)

	before = counts()
	s = replyScanner{}
	for i := range len(stream) {
		s.feed([]byte{stream[i]})
	}
	checkDelta(t, "a byte at a time", before, 1)

	before = counts()
	s = replyScanner{}
	for range 50 {
		for b := []byte(stream); len(b) > 0; {
			n := min(len(b), 1+rand.IntN(9))
			s.feed(b[:n])
			b = b[n:]
		}
	}
	checkDelta(t, "random pieces", before, 50)
	if s.state != stType {
		t.Errorf("after whole replies the scanner is in state %d, want %d", s.state, stType)
	}
}

func BenchmarkReplyScanner(b *testing.B) {
	var s replyScanner
	reply := []byte("*3\r\n:1\r\n:1700000000000\r\n*2\r\n:5\r\n:20\r\n$11\r\n20:17000000\r\n")
	b.SetBytes(int64(len(reply)))
	for b.Loop() {
		s.feed(reply)
	}
}
