package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func opts(tier string) Options {
	return Options{Tier: tier, Ack: AckMaster, Profile: "default"}
}

// The same seed and options give the same schedule; another seed another.
func TestGenerateIsPure(t *testing.T) {
	for _, tier := range []string{TierStandalone, TierCluster} {
		a, err := Generate(42, opts(tier))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Generate(42, opts(tier))
		if !bytes.Equal(a.JSON(), b.JSON()) {
			t.Errorf("%s: seed 42 drew two schedules:\n%s\n%s", tier, a.JSON(), b.JSON())
		}
		c, _ := Generate(43, opts(tier))
		if bytes.Equal(a.JSON()[40:], c.JSON()[40:]) {
			t.Errorf("%s: seeds 42 and 43 drew the same steps", tier)
		}
	}
}

// Over many seeds every kind of step its tier allows is drawn, every
// campaign size K ∈ {1, 3, 12}, and 3 to 8 steps a schedule, some
// overlapping; no two steps hold the same target at once.
func TestGenerateCoversEveryKind(t *testing.T) {
	for _, tier := range []string{TierStandalone, TierCluster} {
		kinds, ks, counts := map[string]int{}, map[int]int{}, map[int]int{}
		overlapping := 0
		for seed := range uint64(300) {
			s, err := Generate(seed, opts(tier))
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			counts[len(s.Steps)]++
			for _, c := range s.Campaigns {
				ks[c.Buckets]++
			}
			for i, st := range s.Steps {
				kinds[st.Kind]++
				for _, o := range s.Steps[i+1:] {
					if overlaps(st, o) {
						overlapping++
						if conflicts(resources(tier, st), resources(tier, o)) {
							t.Errorf("seed %d: %s and %s hold the same target at once", seed, st, o)
						}
					}
				}
			}
		}
		for _, k := range KindsFor(tier) {
			if kinds[k.Name] == 0 {
				t.Errorf("%s: kind %s never drawn in 300 seeds (%v)", tier, k.Name, kinds)
			}
		}
		for _, k := range []int{1, 3, 12} {
			if ks[k] == 0 {
				t.Errorf("%s: no campaign of %d buckets", tier, k)
			}
		}
		for n := range counts {
			if n < 3 || n > 8 {
				t.Errorf("%s: a schedule of %d steps", tier, n)
			}
		}
		if counts[3] == 0 || counts[8] == 0 || overlapping == 0 {
			t.Errorf("%s: steps per schedule %v, %d overlapping pairs", tier, counts, overlapping)
		}
		if tier == TierStandalone && (kinds["migrate"] > 0 || kinds["failover"] > 0 || kinds["repl-cut"] > 0) {
			t.Errorf("cluster faults drawn on one Redis: %v", kinds)
		}
	}
}

// In ack mode master the faults that lose a master's unreplicated writes
// are left out unless asked for; in ack mode replica they are drawn.
func TestGenerateMasterLoss(t *testing.T) {
	count := func(o Options) int {
		n := 0
		for seed := range uint64(200) {
			s, err := Generate(seed, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range s.Steps {
				if MasterLoss(s.Tier, st) {
					n++
				}
			}
		}
		return n
	}
	o := opts(TierCluster)
	if n := count(o); n != 0 {
		t.Errorf("ack master: %d master-loss steps drawn", n)
	}
	o.MasterLoss = true
	if n := count(o); n == 0 {
		t.Error("ack master with MasterLoss: none drawn")
	}
	o.MasterLoss, o.Ack = false, AckReplica
	if n := count(o); n == 0 {
		t.Error("ack replica: none drawn")
	}
	if MasterLoss(TierCluster, Step{Kind: "redis-stop", Target: "master:0", ForMs: 1500}) ||
		!MasterLoss(TierCluster, Step{Kind: "redis-stop", Target: "master:0", ForMs: 2500}) ||
		MasterLoss(TierCluster, Step{Kind: "redis-kill", Target: "replica:0"}) ||
		MasterLoss(TierStandalone, Step{Kind: "redis-kill", Target: "redis"}) {
		t.Error("MasterLoss misjudges a step")
	}
}

// A schedule saved as JSON reads back the same; a bad one is refused.
func TestScheduleFile(t *testing.T) {
	s, err := Generate(7, opts(TierCluster))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(path, s.JSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := LoadSchedule(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.JSON(), s.JSON()) {
		t.Errorf("round trip:\n%s\n%s", s.JSON(), back.JSON())
	}
	if !strings.Contains(s.Summary(), "seed 7, cluster") {
		t.Errorf("summary: %s", s.Summary())
	}
	for name, edit := range map[string]func(*Schedule){
		"unknown kind":       func(s *Schedule) { s.Steps[0].Kind = "meteor" },
		"cluster on one":     func(s *Schedule) { s.Tier = TierStandalone },
		"no such campaign":   func(s *Schedule) { s.Steps = append(s.Steps, Step{AtMs: 1000, Kind: "end", Target: "campaign:9"}) },
		"shard out of range": func(s *Schedule) { s.Steps = append(s.Steps, Step{AtMs: 1000, Kind: "failover", Target: "shard:3"}) },
		"after the load": func(s *Schedule) {
			s.Steps = append(s.Steps, Step{AtMs: s.LoadMs, Kind: "api-kill", Target: "api:0", ForMs: 1})
		},
		"restock elsewhere": func(s *Schedule) {
			s.Steps = append(s.Steps, Step{AtMs: 1, Kind: "restock", Target: "campaign:0", Amount: 7, Count: 1})
		},
		"signal missing": func(s *Schedule) { s.Steps = append(s.Steps, Step{AtMs: 1, Kind: "kafka-down", ForMs: 1}) },
		"bad target":     func(s *Schedule) { s.Steps = append(s.Steps, Step{AtMs: 1, Kind: "api-kill", Target: "api:x"}) },
		"ack unknown":    func(s *Schedule) { s.Ack = "quorum" },
		"bucket out of range": func(s *Schedule) {
			s.Steps = append(s.Steps, Step{AtMs: 1, Kind: "migrate", Target: "campaign:0/bucket:64"})
		},
	} {
		bad, _ := Generate(7, opts(TierCluster))
		edit(bad)
		if err := bad.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := os.WriteFile(path, []byte(`{"version":1,"seed":1,"surprise":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSchedule(path); err == nil {
		t.Error("an unknown field accepted")
	}
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string][3]any{
		"master:2": {"master", 2, 0}, "campaign:1/bucket:11": {"campaign", 1, 11}, "": {"", 0, 0}, "redis": {"redis", 0, 0},
	} {
		k, a, b, err := parseTarget(in)
		if err != nil || k != want[0] || a != want[1] || b != want[2] {
			t.Errorf("parseTarget(%q) = %s %d %d %v", in, k, a, b, err)
		}
	}
	for _, bad := range []string{"master", "api:-1", "shard:1/bucket:2", "moon:1", "campaign:1/slot:2"} {
		if _, _, _, err := parseTarget(bad); err == nil {
			t.Errorf("parseTarget(%q) accepted", bad)
		}
	}
}

// Every kept schedule reads and validates (make torture KEPT=1 replays
// them; a schedule that no longer loads would be skipped by no one).
func TestKeptSchedulesLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("schedules", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no kept schedule under schedules/: %v", err)
	}
	for _, f := range files {
		if _, err := LoadSchedule(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
