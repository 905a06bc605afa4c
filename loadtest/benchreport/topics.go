package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// dropTopicsCmd deletes the Kafka topics and the consumer group of a bench run.
func dropTopicsCmd(args []string) error {
	fs := flag.NewFlagSet("droptopics", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	topics := fs.String("topics", "", "comma-separated topics to delete")
	group := fs.String("group", "", "consumer group to delete")
	fs.Parse(args)
	if *topics == "" {
		return fmt.Errorf("-topics is required")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	if *group != "" {
		gs, err := adm.DeleteGroups(ctx, *group)
		if err != nil {
			return err
		}
		if g, ok := gs[*group]; ok && g.Err != nil {
			fmt.Printf("group %s: %v\n", *group, g.Err)
		}
	}
	resps, err := adm.DeleteTopics(ctx, strings.Split(*topics, ",")...)
	if err != nil {
		return err
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil {
			fmt.Printf("topic %s: %v\n", r.Topic, r.Err)
		}
	}
	return nil
}
