// Command benchreport is the Go side of `make bench` (loadtest/bench.sh):
//
//	benchreport persist    poll PostgreSQL until a campaign's claims are all in claim_log
//	benchreport report     turn a run directory into the JSON result and the Markdown table
//	benchreport droptopics delete the run's Kafka topics
//
// It talks to 127.0.0.1 only: bench.sh refuses any other address before it
// gets here.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "persist":
		err = persistCmd(os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	case "droptopics":
		err = dropTopicsCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchreport %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchreport persist|report|droptopics [flags] (-h for flags)")
	os.Exit(2)
}
