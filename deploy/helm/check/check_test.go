package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

const chartDir = "../cpn"

// helmBinary: $HELM, the one check.sh builds, or helm on the PATH.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	if p, err := filepath.Abs("../.cache/bin/helm"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	t.Fatal("no helm binary: run deploy/helm/check.sh (it builds one into deploy/helm/.cache/bin) or set HELM")
	return ""
}

func helmTemplate(t *testing.T, values string) ([]byte, []byte, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), "template", "crm-acme", chartDir, "-f", values)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

func renderObjects(t *testing.T, values string) []*Object {
	t.Helper()
	out, stderr, err := helmTemplate(t, values)
	if err != nil {
		t.Fatalf("helm template -f %s: %v\n%s", values, err, stderr)
	}
	objs, errs := DecodeAll(bytes.NewReader(out))
	if len(errs) > 0 {
		t.Fatalf("decoding the render of %s: %v", values, errs)
	}
	return objs
}

func exampleInput(t *testing.T, objs []*Object) Input {
	t.Helper()
	data, err := os.ReadFile("../../../relay/relay.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	env, sections, err := RelayEnvFromExample(data)
	if err != nil {
		t.Fatal(err)
	}
	return Input{Objects: objs, RelayEnv: env, RelaySections: sections}
}

const deploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: relay
spec:
  selector:
    matchLabels: {app: relay}
  template:
    metadata:
      labels: {app: relay}
    spec:
      containers:
        - name: relay
          image: ghcr.io/cpn/cpn:0.1.0
          LIVENESS
`

func TestStrictDecodeAcceptsAValidDeployment(t *testing.T) {
	doc := strings.Replace(deploymentYAML, "LIVENESS", "livenessProbe: {httpGet: {path: /healthz, port: 9464}}", 1)
	o, err := DecodeStrict(0, []byte(doc))
	if err != nil {
		t.Fatalf("a valid Deployment was refused: %v", err)
	}
	d := o.Typed.(*appsv1.Deployment)
	if got := d.Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Path; got != "/healthz" {
		t.Fatalf("decoded probe path %q", got)
	}
}

func TestStrictDecodeRejectsAnUnknownField(t *testing.T) {
	// The typo a lenient decoder drops silently: the pod would run without
	// a liveness probe.
	doc := strings.Replace(deploymentYAML, "LIVENESS", "livenesProbe: {httpGet: {path: /healthz, port: 9464}}", 1)
	_, err := DecodeStrict(0, []byte(doc))
	if err == nil {
		t.Fatal("a Deployment with the unknown field livenesProbe was accepted")
	}
	if !strings.Contains(err.Error(), `unknown field "spec.template.spec.containers[0].livenesProbe"`) {
		t.Fatalf("error does not name the unknown field: %v", err)
	}
}

func TestStrictDecodeRejectsCaseDuplicatesAndWrongTypes(t *testing.T) {
	cases := map[string]struct{ doc, want string }{
		"wrong case": {
			doc:  strings.Replace(deploymentYAML, "LIVENESS", "", 1) + "  Replicas: 2\n",
			want: "Replicas",
		},
		"duplicate key": {
			doc:  strings.Replace(deploymentYAML, "LIVENESS", "name: again", 1),
			want: "already set",
		},
		"number where KEDA wants a string": {
			doc: `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: relay}
spec:
  scaleTargetRef: {name: relay}
  triggers:
    - type: kafka
      metadata: {lagThreshold: 100}
`,
			want: "cannot unmarshal number",
		},
		"unknown field of a ServiceMonitor endpoint": {
			doc: `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: relay}
spec:
  selector: {matchLabels: {app: relay}}
  endpoints:
    - port: metrics
      intervall: 30s
`,
			want: "intervall",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeStrict(0, []byte(c.doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", c.doc)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestUnknownKindsAreRefused(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x}\n",
		"apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {name: x}\n",
		"apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: x}\n",
		"kind: ConfigMap\nmetadata: {name: x}\n",
	} {
		if _, err := DecodeStrict(0, []byte(doc)); err == nil {
			t.Errorf("accepted:\n%s", doc)
		}
	}
}

func TestCIValuesRenderAndPassEveryCheck(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci values files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			objs := renderObjects(t, f)
			r := &Report{}
			CheckAll(exampleInput(t, objs), r)
			for _, fail := range r.Failures() {
				t.Errorf("%s: %s: %v", fail.Check, fail.Subject, fail.Err)
			}
		})
	}
}

// Values files that must not render, and what the error must say.
var badValues = map[string]string{
	"bad-keda-above-partitions.yaml":   "maxReplicaCount 7 is above kafka.partitions 6",
	"bad-grace-below-deadline.yaml":    "terminationGracePeriodSeconds 20 is too short",
	"bad-literal-secret.yaml":          "relay.config.target.auth.password holds a literal secret",
	"bad-instance-id-deployment.yaml":  "instance_id must be unique per replica",
	"bad-unknown-value.yaml":           "'partitons' not allowed",
	"bad-ingest-unauthenticated.yaml":  "ingest: anyone who reaches the Service could write events into Kafka",
	"bad-ingest-mtls-without-tls.yaml": "ingest.tls.clientCaSecretName (mTLS) needs ingest.tls.secretName",
}

func TestBadValuesFailToRender(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad-*.yaml")
	if len(files) != len(badValues) {
		t.Fatalf("testdata has %d bad-*.yaml files, badValues lists %d", len(files), len(badValues))
	}
	for _, f := range files {
		want, ok := badValues[filepath.Base(f)]
		if !ok {
			t.Fatalf("%s is not listed in badValues", f)
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, stderr, err := helmTemplate(t, f)
			if err == nil {
				t.Fatalf("helm template rendered %s (%d bytes); it must fail", f, len(out))
			}
			if !strings.Contains(string(stderr), want) {
				t.Fatalf("helm template failed, but not with %q:\n%s", want, stderr)
			}
		})
	}
}

// mutate renders the full values, applies f to the decoded objects, and
// returns the failures of check.
func mutate(t *testing.T, check string, f func(objs []*Object)) []Result {
	t.Helper()
	objs := renderObjects(t, filepath.Join(chartDir, "ci", "full-values.yaml"))
	f(objs)
	r := &Report{}
	CheckAll(exampleInput(t, objs), r)
	return r.FailuresOf(check)
}

func relayStatefulSet(t *testing.T, objs []*Object) *appsv1.StatefulSet {
	t.Helper()
	for _, s := range byKind[*appsv1.StatefulSet](objs) {
		return s
	}
	t.Fatal("no StatefulSet rendered")
	return nil
}

func TestInvariantsCatchWhatTheyClaim(t *testing.T) {
	cases := []struct {
		name, check, want string
		mutate            func(t *testing.T, objs []*Object)
	}{
		{
			name:  "grace period below the drain deadline",
			check: "relay: terminationGracePeriodSeconds > shutdown.deadline_ms + 5 s",
			want:  "deadline 25000 ms",
			mutate: func(t *testing.T, objs []*Object) {
				g := int64(20)
				relayStatefulSet(t, objs).Spec.Template.Spec.TerminationGracePeriodSeconds = &g
			},
		},
		{
			name:  "KEDA above the partitions",
			check: "KEDA: minReplicaCount <= maxReplicaCount <= partitions, kafka lag trigger of the relay's group, target without replicas",
			want:  "maxReplicaCount 25 is above the 24 partitions",
			mutate: func(t *testing.T, objs []*Object) {
				n := int32(25)
				byKind[*kedav1alpha1.ScaledObject](objs)[0].Spec.MaxReplicaCount = &n
			},
		},
		{
			name:  "KEDA watching another consumer group",
			check: "KEDA: minReplicaCount <= maxReplicaCount <= partitions, kafka lag trigger of the relay's group, target without replicas",
			want:  `consumerGroup "cpn-relay-other"`,
			mutate: func(t *testing.T, objs []*Object) {
				byKind[*kedav1alpha1.ScaledObject](objs)[0].Spec.Triggers[0].Metadata["consumerGroup"] = "cpn-relay-other"
			},
		},
		{
			name:  "KEDA and a replicas field",
			check: "KEDA: minReplicaCount <= maxReplicaCount <= partitions, kafka lag trigger of the relay's group, target without replicas",
			want:  "sets replicas",
			mutate: func(t *testing.T, objs []*Object) {
				n := int32(3)
				relayStatefulSet(t, objs).Spec.Replicas = &n
			},
		},
		{
			name:  "a literal client secret in the ConfigMap",
			check: "no secret value in a ConfigMap",
			want:  "target.auth.client_secret is a literal value",
			mutate: func(t *testing.T, objs []*Object) {
				cm := byKind[*corev1.ConfigMap](objs)[0]
				cm.Data["relay.toml"] = strings.Replace(cm.Data["relay.toml"],
					`client_secret = {file = "/etc/cpn/secrets/oauth2-client/client-secret"}`, `client_secret = "hunter2"`, 1)
			},
		},
		{
			name:  "a PEM key in the ConfigMap",
			check: "no secret value in a ConfigMap",
			want:  "PEM block",
			mutate: func(t *testing.T, objs []*Object) {
				byKind[*corev1.ConfigMap](objs)[0].Data["client.key"] = "-----BEGIN PRIVATE KEY-----\nMIG...\n-----END PRIVATE KEY-----\n"
			},
		},
		{
			name:  "no readiness probe",
			check: "probes: liveness /healthz and readiness /readyz on a container port",
			want:  "no readiness probe",
			mutate: func(t *testing.T, objs []*Object) {
				relayStatefulSet(t, objs).Spec.Template.Spec.Containers[0].ReadinessProbe = nil
			},
		},
		{
			name:  "runAsNonRoot off",
			check: "security context: non-root, read-only root, no privilege escalation, drop ALL, seccomp RuntimeDefault",
			want:  "runAsNonRoot is not true",
			mutate: func(t *testing.T, objs []*Object) {
				no := false
				spec := &relayStatefulSet(t, objs).Spec.Template.Spec
				spec.SecurityContext.RunAsNonRoot = &no
				spec.Containers[0].SecurityContext.RunAsNonRoot = nil
			},
		},
		{
			name:  "metrics on loopback",
			check: "relay: metrics listen on all interfaces, on the probed port",
			want:  "not reachable by the kubelet",
			mutate: func(t *testing.T, objs []*Object) {
				c := &relayStatefulSet(t, objs).Spec.Template.Spec.Containers[0]
				for i, a := range c.Args {
					if a == "--metrics-listen" {
						c.Args[i+1] = "127.0.0.1:9464"
					}
				}
			},
		},
		{
			name:  "a StatefulSet without the per-pod instance id",
			check: "relay: static membership only from a StatefulSet pod name",
			want:  "fieldRef metadata.name",
			mutate: func(t *testing.T, objs []*Object) {
				c := &relayStatefulSet(t, objs).Spec.Template.Spec.Containers[0]
				c.Env[0].ValueFrom = nil
				c.Env[0].Value = "relay-0"
			},
		},
		{
			name:  "a ServiceMonitor matching the headless Service too",
			check: "ServiceMonitor: selects exactly one Service, scrapes a named port's /metrics",
			want:  "selects 2 Services",
			mutate: func(t *testing.T, objs []*Object) {
				for _, sm := range byKind[*monitoringv1.ServiceMonitor](objs) {
					delete(sm.Spec.Selector.MatchLabels, "cpn/scrape")
				}
			},
		},
		{
			name:  "a literal SASL password on the command line",
			check: "pod spec: secrets only by reference (secretKeyRef, $(VAR), Secret volumes)",
			want:  "-X sasl.password has a literal value",
			mutate: func(t *testing.T, objs []*Object) {
				c := &relayStatefulSet(t, objs).Spec.Template.Spec.Containers[0]
				for i, a := range c.Args {
					if strings.HasPrefix(a, "sasl.password=") {
						c.Args[i] = "sasl.password=hunter2"
					}
				}
			},
		},
		{
			name:  "an env name the relay refuses",
			check: "relay: CPN_<SECTION>_<KEY> env names are relay settings",
			want:  "CPN_RETRY_MAX_ATEMPTS",
			mutate: func(t *testing.T, objs []*Object) {
				c := &relayStatefulSet(t, objs).Spec.Template.Spec.Containers[0]
				c.Env = append(c.Env, corev1.EnvVar{Name: "CPN_RETRY_MAX_ATEMPTS", Value: "3"})
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fails := mutate(t, c.check, func(objs []*Object) { c.mutate(t, objs) })
			if len(fails) == 0 {
				t.Fatalf("check %q did not fail", c.check)
			}
			found := false
			for _, f := range fails {
				if strings.Contains(f.Err.Error(), c.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("check %q failed, but not with %q: %v", c.check, c.want, fails)
			}
		})
	}
}

func TestParseRelayArgs(t *testing.T) {
	f, err := ParseRelayArgs([]string{"run", "--config", "/etc/cpn/relay/relay.toml", "--metrics-listen=0.0.0.0:9464",
		"-X", "security.protocol=SSL", "-Xsasl.username=relay", "--header", "X-Api-Key: $(K)", "--json-logs"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Values["--config"] != "/etc/cpn/relay/relay.toml" || f.Values["--metrics-listen"] != "0.0.0.0:9464" ||
		len(f.XProps) != 2 || f.XProps[1] != "sasl.username=relay" || len(f.Headers) != 1 || f.Values["--json-logs"] != "true" {
		t.Fatalf("parsed %+v", f)
	}
	for _, bad := range [][]string{{"serve"}, {"run", "--bogus", "x"}, {"run", "--config"}} {
		if _, err := ParseRelayArgs(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestExpandKube(t *testing.T) {
	env := map[string]string{"A": "secret"}
	for in, want := range map[string]string{
		"sasl.password=$(A)": "sasl.password=secret",
		"$(B) stays":         "$(B) stays",
		"$$(A) is escaped":   "$(A) is escaped",
	} {
		if got := ExpandKube(in, env); got != want {
			t.Errorf("ExpandKube(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRelayEnvFromExample(t *testing.T) {
	data, err := os.ReadFile("../../../relay/relay.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	known, prefixes, err := RelayEnvFromExample(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"CPN_RETRY_MAX_ATTEMPTS", "CPN_SHUTDOWN_DEADLINE_MS", "CPN_KAFKA_INSTANCE_ID", "CPN_OBSERVABILITY_METRICS_LISTEN"} {
		if !known[name] {
			t.Errorf("%s should be a relay setting", name)
		}
	}
	for _, name := range []string{"CPN_TARGET_TLS", "CPN_TARGET_AUTH", "CPN_KAFKA_PROPERTIES_X"} {
		if known[name] {
			t.Errorf("%s is a table, not settable by env", name)
		}
	}
	if len(prefixes) < 8 {
		t.Errorf("sections %v", prefixes)
	}
}
