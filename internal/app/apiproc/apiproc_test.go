package apiproc

import (
	"strings"
	"testing"

	"github.com/redpacket/rain/internal/config"
)

// TestPprofLoopbackOnly: PPROF_ADDR on anything but loopback is a
// configuration error naming the variable.
func TestPprofLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:6060": true, "[::1]:6060": true, "localhost:6060": true, "127.0.0.2:6060": true, "[::ffff:127.0.0.1]:1": true,
		":6060": false, "0.0.0.0:6060": false, "[::]:6060": false, "10.0.0.1:6060": false, "example.com:6060": false,
		"localhost.example.com:6060": false,
	} {
		s := config.New(func(k string) (string, bool) {
			v, found := map[string]string{"ADMIN_TOKEN": "t", "PPROF_ADDR": addr}[k]
			return v, found
		})
		var c MainConfig
		c.Bind(s)
		err := s.Err()
		if ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "PPROF_ADDR") {
			t.Errorf("%s: %v", addr, err)
		}
	}
}
