package testenv

import (
	"context"
	"os"
	"runtime"
	"testing"
)

func TestProcReading(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if p, err := ppid(os.Getpid()); err != nil || p != os.Getppid() {
		t.Fatalf("ppid: %d, %v; want %d", p, err, os.Getppid())
	}
	if cpu := cpuOf([]int{os.Getpid(), 1 << 30}); len(cpu) != 1 || cpu[os.Getpid()] <= 0 {
		t.Fatalf("cpuOf: %v, want this process's CPU only", cpu)
	}
	if _, err := ppid(1 << 30); err == nil {
		t.Fatal("ppid of no process: no error")
	}
}

func TestMeasurePostgresCPU(t *testing.T) {
	db := Postgres(t)
	if _, err := db.Exec(context.Background(), `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	stop := MeasurePostgresCPU(t, db)
	var n int64
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM generate_series(1, 3000000)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	c := stop()
	if !c.Measured {
		t.Skip("PostgreSQL is not on this machine")
	}
	if c.Backends <= 0 || c.Server < c.Backends {
		t.Fatalf("%+v: want the backend's CPU, and the server's at least as much", c)
	}
}
