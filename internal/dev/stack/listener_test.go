package stack

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestListenerPid(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	pid, err := ListenerPid(addr)
	if err != nil || pid != os.Getpid() {
		t.Errorf("ListenerPid(%s) = %d, %v; want this process, %d", addr, pid, err, os.Getpid())
	}
	ln.Close()
	if _, err := ListenerPid(addr); err == nil {
		t.Errorf("ListenerPid(%s) after close: want an error", addr)
	}
	if _, err := ListenerPid("10.0.0.1:80"); err == nil {
		t.Error("a non-loopback address: want an error")
	}
}

func TestListeningInodes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tcp")
	text := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 4242 1\n" +
		"   1: 0100007F:18EB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   101        0 4343 1\n" +
		"   2: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 4444 1\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	if err := listeningInodes(path, 6379, got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got["4242"] {
		t.Errorf("inodes of port 6379 = %v, want only the listening 4242", got)
	}
}
