package main

import "testing"

// TestAcksReplica: the checker tolerates claims answered 503 exactly when
// the scenario's api acknowledges with a replica.
func TestAcksReplica(t *testing.T) {
	defer func(was bool) { onCluster = was }(onCluster)
	for _, c := range []struct {
		cluster bool
		env     []string
		want    bool
	}{
		{false, nil, false},
		{true, nil, true},
		{true, []string{"REDIS_ACK=master"}, false},
		{true, []string{"PRODUCER_LINGER=200ms", "REDIS_ACK=replica"}, true},
		{false, []string{"REDIS_ACK=replica"}, true},
		{false, []string{"REDIS_ACK=auto"}, false},
	} {
		onCluster = c.cluster
		r := &run{sc: &Scenario{APIEnv: c.env}}
		if got := r.acksReplica(); got != c.want {
			t.Errorf("cluster %v, env %v: %v, want %v", c.cluster, c.env, got, c.want)
		}
	}
}
