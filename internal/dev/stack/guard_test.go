package stack

import "testing"

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.8.9.10": true, "::1": true, "[::1]": true, "localhost": true, "LOCALHOST": true,
		"::ffff:127.0.0.1": true,
		"":                 false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "128.0.0.1": false,
		"192.168.1.2": false, "example.com": false, "localhost.example.com": false, "fe80::1%lo": false,
		"126.255.255.255": false, "::2": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestCheckAddr(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:6379", "[::1]:9092", "localhost:5432", "127.1.2.3:1", "127.0.0.1:65535"} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1:6379", ":6379", "0.0.0.0:6379", "127.0.0.1", "127.0.0.1:0",
		"127.0.0.1:65536", "127.0.0.1:x", "redis:6379", "[::]:80"} {
		if err := CheckAddr(bad); err == nil {
			t.Errorf("CheckAddr(%q) passed", bad)
		}
	}
}

func TestCheckAddrs(t *testing.T) {
	if err := CheckAddrs("127.0.0.1:9092, 127.0.0.2:9092"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", " , ", "127.0.0.1:9092,kafka:9092"} {
		if err := CheckAddrs(bad); err == nil {
			t.Errorf("CheckAddrs(%q) passed", bad)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080/readyz", "https://localhost/", "http://[::1]:9091/metrics"} {
		if err := CheckURL(ok); err != nil {
			t.Errorf("CheckURL(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.1.1.1:8080/", "ftp://127.0.0.1/", "http://example.com/", "127.0.0.1:8080", "http://%zz"} {
		if err := CheckURL(bad); err == nil {
			t.Errorf("CheckURL(%q) passed", bad)
		}
	}
}

func TestCheckDSN(t *testing.T) {
	for _, ok := range []string{
		"postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable",
		"host=localhost port=5432 user=rain dbname=rain sslmode=disable",
		"postgres://rain@127.0.0.1,127.0.0.2/rain?sslmode=disable",
	} {
		if err := CheckDSN(ok); err != nil {
			t.Errorf("CheckDSN(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{
		"postgres://rain:rain@db.example.com:5432/rain",
		"postgres://rain@127.0.0.1,10.0.0.5/rain",
		"host=/var/run/postgresql dbname=rain",
		"postgres://%zz",
	} {
		if err := CheckDSN(bad); err == nil {
			t.Errorf("CheckDSN(%q) passed", bad)
		}
	}
}
