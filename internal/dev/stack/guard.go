package stack

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsLoopback reports whether host is a loopback address: an IP literal in
// 127.0.0.0/8 or ::1 (an IPv4-mapped 127.x address too), or the name
// "localhost", which RFC 6761 reserves for loopback. An empty host (which
// means every interface to a listener) is not loopback, nor is an address
// with a zone.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if err != nil || ip.Zone() != "" {
		return false
	}
	ip = ip.Unmap()
	return (ip.Is4() && ip.As4()[0] == 127) || ip == netip.IPv6Loopback()
}

// CheckAddr fails unless addr is host:port with a loopback host and a port
// in 1-65535. Everything this package starts or sends traffic to passes it.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("address %q: port must be 1-65535", addr)
	}
	if !IsLoopback(host) {
		return fmt.Errorf("address %q is not loopback (127.0.0.0/8, ::1 or localhost): refused", addr)
	}
	return nil
}

// CheckAddrs is CheckAddr of each address of a comma-separated list (such
// as KAFKA_BROKERS); an empty list fails.
func CheckAddrs(list string) error {
	n := 0
	for a := range strings.SplitSeq(list, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if err := CheckAddr(a); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("empty address list %q", list)
	}
	return nil
}

// CheckURL fails unless raw is an http or https URL whose host is loopback.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url %q: want http or https", raw)
	}
	if !IsLoopback(u.Hostname()) {
		return fmt.Errorf("url %q is not on a loopback host: refused", raw)
	}
	return nil
}

// CheckDSN fails unless every host of a PostgreSQL connection string (URL
// or keyword/value form) is loopback. A Unix socket path is refused too:
// the local database is reached over TCP on 127.0.0.1.
func CheckDSN(dsn string) error {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("postgres dsn: %w", err)
	}
	hosts := []string{cfg.Host}
	for _, f := range cfg.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if !IsLoopback(h) {
			return fmt.Errorf("postgres dsn: host %q is not loopback: refused", h)
		}
	}
	return nil
}
