// Command receiver is the benchmark's loopback HTTP target
// (deploy/bench/compare): it answers every POST with 200 after an optional
// fixed delay and remembers when each one arrived and which event
// (GSW_MESSAGE_GUID) it carried, so the benchmark can count deliveries and
// duplicates and measure produce-to-POST latency for any relay, ours or a
// peer's, with the same receiver. Standard library only.
//
//	receiver -listen 127.0.0.1:0 -latency-ms 0 -port-file F -out arrivals.tsv
//
// With -tls-cert and -tls-key it serves HTTPS, offering HTTP/2 and
// HTTP/1.1 by ALPN (only HTTP/1.1 with -http1-only): the benchmark's
// HTTP/2 comparison (BENCHMARKS.md).
//
// GET /stats returns {"requests":N,"unique":U}. On SIGTERM or SIGINT it
// writes one line per request to -out: the GUID and the arrival time in
// Unix nanoseconds, separated by a tab, in arrival order.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

type arrival struct {
	guid string
	at   int64
}

type recorder struct {
	mu       sync.Mutex
	arrivals []arrival
	seen     map[string]struct{}
}

var guidField = []byte(`"GSW_MESSAGE_GUID":"`)

// guidOf returns the value of GSW_MESSAGE_GUID in a JSON body, or "" when
// there is none (a malformed request still counts as a request).
func guidOf(body []byte) string {
	i := bytes.Index(body, guidField)
	if i < 0 {
		return ""
	}
	rest := body[i+len(guidField):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	latency := flag.Int("latency-ms", 0, "delay every reply by this many milliseconds")
	portFile := flag.String("port-file", "", "write the bound port to this file once listening")
	out := flag.String("out", "", "write the arrivals (GUID, Unix ns) here on SIGTERM/SIGINT")
	certFile := flag.String("tls-cert", "", "serve HTTPS with this PEM certificate chain (with -tls-key)")
	keyFile := flag.String("tls-key", "", "the PEM private key of -tls-cert")
	http1Only := flag.Bool("http1-only", false, "with TLS, offer HTTP/1.1 only (no h2 by ALPN)")
	flag.Parse()
	if (*certFile == "") != (*keyFile == "") {
		log.Fatalf("receiver: -tls-cert and -tls-key go together")
	}

	rec := &recorder{seen: make(map[string]struct{}, 1<<17)}
	delay := time.Duration(*latency) * time.Millisecond
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		n, u := len(rec.arrivals), len(rec.seen)
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"requests\":%d,\"unique\":%d}\n", n, u)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		now := time.Now().UnixNano()
		guid := guidOf(body)
		rec.mu.Lock()
		rec.arrivals = append(rec.arrivals, arrival{guid, now})
		rec.seen[guid] = struct{}{}
		rec.mu.Unlock()
		if delay > 0 {
			time.Sleep(delay)
		}
		w.WriteHeader(http.StatusOK)
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("receiver: listen %s: %v", *listen, err)
	}
	if *portFile != "" {
		port := ln.Addr().(*net.TCPAddr).Port
		if err := os.WriteFile(*portFile, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			log.Fatalf("receiver: -port-file: %v", err)
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if *http1Only {
		// A non-nil empty map turns off the server's HTTP/2.
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	go func() {
		var err error
		if *certFile != "" {
			err = srv.ServeTLS(ln, *certFile, *keyFile)
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && err != http.ErrServerClosed {
			log.Fatalf("receiver: %v", err)
		}
	}()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	_ = srv.Close()
	if *out == "" {
		return
	}
	f, err := os.Create(*out)
	if err != nil {
		log.Fatalf("receiver: -out: %v", err)
	}
	w := bufio.NewWriter(f)
	rec.mu.Lock()
	for _, a := range rec.arrivals {
		fmt.Fprintf(w, "%s\t%d\n", a.guid, a.at)
	}
	rec.mu.Unlock()
	if err := w.Flush(); err != nil {
		log.Fatalf("receiver: -out: %v", err)
	}
	if err := f.Close(); err != nil {
		log.Fatalf("receiver: -out: %v", err)
	}
}
