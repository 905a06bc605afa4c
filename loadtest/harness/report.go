package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// NoteEvent adds to a run's events what happened, timed from the load's
// start ("setup" before it), and returns the entry for the run's log. mu
// guards events: the fault, the load and the merchant step note events
// from their own goroutines.
func NoteEvent(mu *sync.Mutex, events *[]string, start time.Time, format string, args ...any) string {
	t := "setup"
	if !start.IsZero() {
		t = fmt.Sprintf("t=%.1fs", time.Since(start).Seconds())
	}
	msg := t + " " + fmt.Sprintf(format, args...)
	mu.Lock()
	*events = append(*events, msg)
	mu.Unlock()
	return msg
}

// SaveReport prints an invocation's report (md, markdown) and saves it in
// dir as report.md, with results as report.json.
func SaveReport(dir, md string, results any) {
	fmt.Println()
	fmt.Print(md)
	_ = os.WriteFile(filepath.Join(dir, "report.md"), []byte(md), 0o644)
	if b, err := json.MarshalIndent(results, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "report.json"), b, 0o644)
	}
	fmt.Printf("\nreport: %s\n", filepath.Join(dir, "report.md"))
}
