// Command bench-kfake runs franz-go's kfake (github.com/twmb/franz-go/pkg/kfake) as a broker process, the
// Go peer of `scripts/bench --only peers`.
//
//	bench-kfake [--port N] [--brokers N]
//
// Starts a kfake cluster (in memory, 1 broker by default) listening on 127.0.0.1 (port 0: any free
// port), prints `kfake ready bootstrap=HOST:PORT[,...]` on stdout once it listens, and serves until
// stdin closes or SIGTERM/SIGINT: the same contract as tests/java/kafka-broker.sh and
// scripts/mock-cluster.py. kfake supports CreateTopics; topic auto-creation stays off, as on the other
// peers of the benchmark.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 0, "port of the first broker on 127.0.0.1 (0: any free port)")
	brokers := flag.Int("brokers", 1, "number of brokers")
	flag.Parse()

	opts := []kfake.Opt{kfake.NumBrokers(*brokers)}
	if *port != 0 {
		ports := make([]int, *brokers)
		for i := range ports {
			ports[i] = *port + i
		}
		opts = append(opts, kfake.Ports(ports...))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-kfake: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("kfake ready bootstrap=%s\n", strings.Join(cluster.ListenAddrs(), ","))

	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		done <- struct{}{}
	}()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		done <- struct{}{}
	}()
	<-done
	cluster.Close()
}
