package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The relay's configuration as the pod would load it, checked by the real
// binary: `cpn-relay check-config` with the rendered file, flags and env,
// and the pod's mounted files recreated under a temporary directory (Secret
// keys become placeholder values, or a throw-away certificate and key where
// the key's name says PEM).

const placeholderSecret = "placeholder-secret-value"

var envRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// ExpandKube expands $(VAR) as the kubelet does in command and args ($$ is a
// literal $; an undefined $(VAR) stays as written).
func ExpandKube(s string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := m[2 : len(m)-1]
		if v, ok := env[name]; ok {
			return v
		}
		return m
	})
}

// podEnv is the container's environment as the kubelet would set it, with
// placeholders for Secret values.
func podEnv(w *Workload, c *corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = ExpandKube(e.Value, env)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = w.Obj.Name + "-0"
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = "placeholder-" + e.ValueFrom.FieldRef.FieldPath
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = placeholderSecret
		default:
			env[e.Name] = "1"
		}
	}
	return env
}

type pemPair struct{ cert, key []byte }

func newPEMPair() (pemPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pemPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cpn-chart-check"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:              []string{"cpn-chart-check"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return pemPair{}, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return pemPair{}, err
	}
	return pemPair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}, nil
}

// placeholderFor picks a file's content from its Secret key's name.
func placeholderFor(key string, p pemPair) []byte {
	k := strings.ToLower(key)
	switch {
	case strings.HasSuffix(k, ".key") || strings.Contains(k, "private"):
		return p.key
	case strings.HasSuffix(k, ".crt") || strings.HasSuffix(k, ".pem") || strings.Contains(k, "cert") || strings.HasPrefix(k, "ca"):
		return p.cert
	case strings.HasPrefix(k, "whsec") || strings.Contains(k, "signing") || k == "current" || k == "previous":
		// A signing secret must be base64.
		return []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	default:
		return []byte(placeholderSecret)
	}
}

// recreateMounts writes the container's ConfigMap and Secret mounts under
// root, and returns the mount paths (to rewrite in the config and flags).
func recreateMounts(root string, pod *corev1.PodSpec, c *corev1.Container, objs []*Object, p pemPair) ([]string, error) {
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	var mounts []string
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		mounts = append(mounts, m.MountPath)
		switch {
		case v.ConfigMap != nil:
			for _, cm := range byKind[*corev1.ConfigMap](objs) {
				if cm.Name != v.ConfigMap.Name {
					continue
				}
				for k, data := range cm.Data {
					if err := os.WriteFile(filepath.Join(dir, k), []byte(data), 0o644); err != nil {
						return nil, err
					}
				}
			}
		case v.Secret != nil:
			for _, it := range v.Secret.Items {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, it.Path)), 0o755); err != nil {
					return nil, err
				}
				if err := os.WriteFile(filepath.Join(dir, it.Path), placeholderFor(it.Key, p), 0o600); err != nil {
					return nil, err
				}
			}
		}
	}
	return mounts, nil
}

// rewritePaths moves every mount path under root.
func rewritePaths(s, root string, mounts []string) string {
	for _, m := range mounts {
		if m == "/tmp" {
			continue
		}
		s = strings.ReplaceAll(s, strings.TrimSuffix(m, "/")+"/", filepath.Join(root, m)+"/")
	}
	return s
}

// CheckRelayBinary runs `cpn-relay check-config` on each relay as its pod
// would start it.
func CheckRelayBinary(bin string, relays []*Relay, objs []*Object, r *Report) {
	check := "relay: cpn-relay check-config accepts the rendered file, flags and env"
	if len(relays) == 0 {
		return
	}
	pair, err := newPEMPair()
	if err != nil {
		r.Fail(check, "setup", "%v", err)
		return
	}
	for _, rl := range relays {
		subject := rl.String()
		root, err := os.MkdirTemp("", "cpn-chart-check-")
		if err != nil {
			r.Fail(check, subject, "%v", err)
			continue
		}
		defer os.RemoveAll(root)
		mounts, err := recreateMounts(root, &rl.Template.Spec, rl.Container, objs, pair)
		if err != nil {
			r.Fail(check, subject, "recreating the mounts: %v", err)
			continue
		}
		// The config file itself also names the mounted files.
		cfgFile := filepath.Join(root, rl.ConfigPath)
		if data, err := os.ReadFile(cfgFile); err == nil {
			if err := os.WriteFile(cfgFile, []byte(rewritePaths(string(data), root, mounts)), 0o644); err != nil {
				r.Fail(check, subject, "%v", err)
				continue
			}
		}
		env := podEnv(rl.Workload, rl.Container)
		args := []string{"check-config"}
		for _, a := range rl.Container.Args[1:] {
			args = append(args, rewritePaths(ExpandKube(a, env), root, mounts))
		}
		var envList []string
		for k, v := range env {
			envList = append(envList, k+"="+rewritePaths(v, root, mounts))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = envList
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		cancel()
		if err != nil {
			r.Fail(check, subject, "%v: %s", err, strings.TrimSpace(out.String()))
			continue
		}
		r.Pass(check, subject)
	}
}

// CheckProducerBinary compares the ingest's flags and CPN_ env names with
// what `cpn-producer serve --help` documents.
func CheckProducerBinary(bin string, objs []*Object, r *Report) {
	check := "ingest: every flag and CPN_ env name is an option of cpn-producer serve"
	for _, w := range collectWorkloads(objs) {
		for _, c := range w.Template.Spec.Containers {
			if path.Base(firstOr(c.Command, "")) != "cpn-producer" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := exec.CommandContext(ctx, bin, "serve", "--help").CombinedOutput()
			cancel()
			if err != nil {
				r.Fail(check, w.String(), "%s serve --help: %v", bin, err)
				continue
			}
			help := string(out)
			var bad []string
			for _, a := range c.Args[1:] {
				if strings.HasPrefix(a, "-") {
					flag, _, _ := strings.Cut(a, "=")
					if !regexp.MustCompile(`(^|[\s,])` + regexp.QuoteMeta(flag) + `[\s=,<]`).MatchString(help) {
						bad = append(bad, flag)
					}
				}
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "CPN_") && !strings.Contains(help, "env: "+e.Name+"=") {
					bad = append(bad, e.Name)
				}
			}
			if len(bad) > 0 {
				r.Fail(check, w.String(), "not in `cpn-producer serve --help`: %s", strings.Join(bad, ", "))
			} else {
				r.Pass(check, fmt.Sprintf("%s (%d args, %d env)", w, len(c.Args), len(c.Env)))
			}
		}
	}
}
