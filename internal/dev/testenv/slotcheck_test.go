package testenv

import (
	"fmt"
	"strings"
	"testing"
)

func TestScriptSlots(t *testing.T) {
	for _, args := range [][]string{
		{"GET", "a"},
		{"EVALSHA", "sha", "0"},
		{"EVALSHA", "sha", "3", "rp:{42}:meta", "rp:{42}:stock", "rp:{42}:claims", "u1", "r1"},
		{"EVAL", "return 1", "2", "x:{7}", "y:{7}"},
		{"fcall", "f", "1", "a"},
	} {
		if err := scriptSlots(args); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
	for _, args := range [][]string{
		{"EVALSHA", "sha", "2", "rp:{42}:meta", "rp:{43}:claims"},
		{"EVAL_RO", "return 1", "2", "a", "b"},
		{"FCALL", "f", "3", "{1}a", "{1}b", "{2}c"},
	} {
		if err := scriptSlots(args); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
			t.Errorf("%q: %v, want a CROSSSLOT refusal", args, err)
		}
	}
}

func TestSlotCheckedClientRefusesCrossSlotScripts(t *testing.T) {
	c := Redis(t)
	defer func() {
		// A cluster client's builder refuses it first; on one Redis the
		// wrapper does.
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "CROSSSLOT") && !strings.Contains(fmt.Sprint(r), "different key slots") {
			t.Errorf("recovered %v, want a refusal of the cross-slot call", r)
		}
	}()
	c.Do(t.Context(), c.B().Eval().Script("return 1").Numkeys(2).Key("rptest:{1}:a", "rptest:{2}:b").Build())
	t.Error("a cross-slot script call went through")
}
