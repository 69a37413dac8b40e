// Command check reads the output of `helm template` for the cpn chart,
// decodes every document strictly into its Kubernetes (or KEDA,
// prometheus-operator) Go type, and asserts the chart's invariants:
// probes, security context, resources, grace period above the relay's drain
// deadline, no secret value in a ConfigMap, KEDA within the partitions and
// on the relay's own consumer group, selectors that select, and more (see
// invariants.go). With -relay-bin / -producer-bin it also asks the real
// binaries whether they accept the rendered configuration.
//
//	helm template crm-acme deploy/helm/cpn -f values.yaml | check -name acme
//
// Exit status: 0 when every check held, 1 otherwise, 2 on a usage error.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
)

// Settings of the relay without a key in relay.example.toml that env still
// sets (relay/src/config/env.rs), and the CPN_ names of cpn-producer the
// relay leaves alone.
var relayEnvExtra = []string{
	"CPN_KAFKA_DLQ_TOPIC", "CPN_KAFKA_INSTANCE_ID", "CPN_OBSERVABILITY_RELAY_ID",
	"CPN_KAFKA_PROPERTIES", "CPN_RETRY_AFTER_SECS", "CPN_SHUTDOWN_TIMEOUT_MS",
}

// RelayEnvFromExample derives CPN_<SECTION>_<KEY> names from the plain keys
// of each section of relay.example.toml, as the relay derives them from its
// defaults.
func RelayEnvFromExample(data []byte) (map[string]bool, []string, error) {
	var t map[string]any
	if err := toml.Unmarshal(data, &t); err != nil {
		return nil, nil, err
	}
	known := map[string]bool{}
	var prefixes []string
	for section, v := range t {
		keys, ok := v.(map[string]any)
		if !ok {
			continue
		}
		prefix := "CPN_" + strings.ToUpper(section) + "_"
		prefixes = append(prefixes, prefix)
		for k, val := range keys {
			if _, table := val.(map[string]any); table {
				continue
			}
			known[prefix+strings.ToUpper(k)] = true
		}
	}
	for _, e := range relayEnvExtra {
		known[e] = true
	}
	sort.Strings(prefixes)
	return known, prefixes, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "label printed before every line (e.g. the values file)")
	relayExample := fs.String("relay-example", "", "relay/relay.example.toml: check CPN_<SECTION>_<KEY> env names against it")
	relayBin := fs.String("relay-bin", "", "a cpn-relay binary: run check-config on each relay as its pod would")
	producerBin := fs.String("producer-bin", "", "a cpn-producer binary: check the ingest's flags and env against serve --help")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: helm template ... | check [flags] [FILE ...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	prefix := ""
	if *name != "" {
		prefix = *name + ": "
	}

	var input io.Reader = stdin
	if fs.NArg() > 0 {
		var readers []io.Reader
		for _, f := range fs.Args() {
			if f == "-" {
				readers = append(readers, stdin)
				continue
			}
			fh, err := os.Open(f)
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 2
			}
			defer fh.Close()
			// A document separator between files.
			readers = append(readers, fh, strings.NewReader("\n---\n"))
		}
		input = io.MultiReader(readers...)
	}

	in := Input{}
	if *relayExample != "" {
		data, err := os.ReadFile(*relayExample)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		in.RelayEnv, in.RelaySections, err = RelayEnvFromExample(data)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", *relayExample, err)
			return 2
		}
	}

	r := &Report{}
	objs, errs := DecodeAll(input)
	const decodeCheck = "every document decodes strictly into its apiVersion/kind"
	for _, err := range errs {
		r.Fail(decodeCheck, "document", "%v", err)
	}
	counts := map[string]int{}
	for _, o := range objs {
		counts[o.Kind]++
	}
	var parts []string
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(parts)
	if len(objs) == 0 && len(errs) == 0 {
		r.Fail(decodeCheck, "input", "no documents")
	} else if len(errs) == 0 {
		r.Pass(decodeCheck, strings.Join(parts, ", "))
	}

	relays := CheckAll(withObjects(in, objs), r)
	if *relayBin != "" {
		// check-config runs in a temporary directory.
		abs, err := filepath.Abs(*relayBin)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		CheckRelayBinary(abs, relays, objs, r)
	}
	if *producerBin != "" {
		CheckProducerBinary(*producerBin, objs, r)
	}
	r.Print(stdout, prefix)
	if len(r.Failures()) > 0 {
		return 1
	}
	return 0
}

func withObjects(in Input, objs []*Object) Input {
	in.Objects = objs
	return in
}
