package main

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	toml "github.com/pelletier/go-toml/v2"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The relay's defaults that matter here (relay/relay.example.toml).
const (
	relayDefaultDeadlineMs    = 15000
	relayDefaultMetricsListen = "127.0.0.1:9464"
	relayDefaultBrokers       = "127.0.0.1:9092"
	relayDefaultTopic         = "contact-processed"
	relayDefaultGroup         = "cpn-relay"
	// The relay commits and leaves the group after the drain deadline.
	graceMarginSeconds = 5
	// Kubernetes' default terminationGracePeriodSeconds.
	kubeDefaultGrace = 30
	// Annotation on the ScaledObject carrying kafka.partitions.
	partitionsAnnotation = "cpn/kafka-partitions"
)

var (
	secretName   = regexp.MustCompile(`(?i)(password|passwd|secret|token|api[-_]?key|authorization|cookie|signature|credential)`)
	envReference = regexp.MustCompile(`^\$\([A-Za-z_][A-Za-z0-9_]*\)$`)
)

// Workload is a Deployment or a StatefulSet.
type Workload struct {
	Obj      *Object
	Replicas *int32
	Selector *metav1.LabelSelector
	Template *corev1.PodTemplateSpec
}

func (w *Workload) String() string { return w.Obj.String() }

// Relay is a workload running cpn-relay, with its effective settings.
type Relay struct {
	*Workload
	Container *corev1.Container
	Flags     RelayFlags
	// ConfigPath is --config; ConfigMap and ConfigKey where it is mounted from.
	ConfigPath string
	ConfigMap  *corev1.ConfigMap
	ConfigKey  string
	TOML       map[string]any
	Brokers    string
	Topic      string
	Group      string
}

// Input is what the invariants look at.
type Input struct {
	Objects []*Object
	// Known CPN_ env names of the relay (from relay.example.toml); nil: not checked.
	RelayEnv map[string]bool
	// Section prefixes (CPN_KAFKA_, ...) of the relay's configuration.
	RelaySections []string
}

// CheckAll runs every invariant.
func CheckAll(in Input, r *Report) []*Relay {
	workloads := collectWorkloads(in.Objects)
	checkUniqueNames(in.Objects, r)
	for _, w := range workloads {
		checkWorkload(w, in.Objects, r)
	}
	var relays []*Relay
	for _, w := range workloads {
		for i := range w.Template.Spec.Containers {
			c := &w.Template.Spec.Containers[i]
			switch path.Base(firstOr(c.Command, "")) {
			case "cpn-relay":
				if rl := checkRelay(w, c, in, r); rl != nil {
					relays = append(relays, rl)
				}
			case "cpn-producer":
				checkIngest(w, c, r)
			default:
				r.Fail("workload runs cpn-relay or cpn-producer", w.String(), "container %q runs %q", c.Name, firstOr(c.Command, "the image's entrypoint"))
			}
		}
	}
	checkConfigMaps(in.Objects, r)
	checkPodSecrets(workloads, r)
	checkScaledObjects(in.Objects, workloads, relays, r)
	checkHPAs(in.Objects, workloads, r)
	checkPDBs(in.Objects, workloads, r)
	checkServices(in.Objects, workloads, r)
	checkServiceMonitors(in.Objects, r)
	checkServiceAccounts(in.Objects, workloads, r)
	return relays
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

func collectWorkloads(objs []*Object) []*Workload {
	var out []*Workload
	for _, o := range objs {
		switch t := o.Typed.(type) {
		case *appsv1.Deployment:
			out = append(out, &Workload{Obj: o, Replicas: t.Spec.Replicas, Selector: t.Spec.Selector, Template: &t.Spec.Template})
		case *appsv1.StatefulSet:
			out = append(out, &Workload{Obj: o, Replicas: t.Spec.Replicas, Selector: t.Spec.Selector, Template: &t.Spec.Template})
		}
	}
	return out
}

func byKind[T any](objs []*Object) []T {
	var out []T
	for _, o := range objs {
		if t, ok := o.Typed.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func checkUniqueNames(objs []*Object, r *Report) {
	seen := map[string]bool{}
	for _, o := range objs {
		key := o.APIVersion + "/" + o.String()
		if seen[key] {
			r.Fail("names are unique per kind", o.String(), "rendered twice")
			continue
		}
		seen[key] = true
		r.Pass("names are unique per kind", fmt.Sprintf("%d objects", len(objs)))
	}
}

func selects(sel *metav1.LabelSelector, podLabels map[string]string) (bool, error) {
	if sel == nil {
		return false, fmt.Errorf("no selector")
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	if s.Empty() {
		return false, fmt.Errorf("the selector is empty (it would select every pod)")
	}
	return s.Matches(labels.Set(podLabels)), nil
}

func checkWorkload(w *Workload, objs []*Object, r *Report) {
	pod := &w.Template.Spec
	name := w.String()

	if ok, err := selects(w.Selector, w.Template.Labels); err != nil || !ok {
		r.Fail("selector matches the pod template", name, "selector %v, pod labels %v (%v)", w.Selector, w.Template.Labels, err)
	} else {
		r.Pass("selector matches the pod template", name)
	}

	// Security context: the pod's, overridden per container.
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		subject := name + " " + c.Name
		nonRoot := psc.RunAsNonRoot
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		user := psc.RunAsUser
		if sc.RunAsUser != nil {
			user = sc.RunAsUser
		}
		seccomp := psc.SeccompProfile
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		var problems []string
		if nonRoot == nil || !*nonRoot {
			problems = append(problems, "runAsNonRoot is not true")
		}
		if user != nil && *user == 0 {
			problems = append(problems, "runAsUser is 0")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			problems = append(problems, "readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			problems = append(problems, "allowPrivilegeEscalation is not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			problems = append(problems, "privileged")
		}
		if sc.Capabilities == nil || !containsCap(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			problems = append(problems, "capabilities do not drop ALL (or add some)")
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			problems = append(problems, "seccompProfile is not RuntimeDefault")
		}
		if len(problems) > 0 {
			r.Fail("security context: non-root, read-only root, no privilege escalation, drop ALL, seccomp RuntimeDefault", subject, "%s", strings.Join(problems, "; "))
		} else {
			r.Pass("security context: non-root, read-only root, no privilege escalation, drop ALL, seccomp RuntimeDefault", subject)
		}

		// Probes: liveness on /healthz, readiness on /readyz, on a declared port.
		checkProbe(r, subject, "liveness", c.LivenessProbe, "/healthz", c.Ports)
		checkProbe(r, subject, "readiness", c.ReadinessProbe, "/readyz", c.Ports)

		// Resources.
		var missing []string
		if q, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok || q.IsZero() {
			missing = append(missing, "requests.cpu")
		}
		if q, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok || q.IsZero() {
			missing = append(missing, "requests.memory")
		}
		lim, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || lim.IsZero() {
			missing = append(missing, "limits.memory")
		} else if req, ok := c.Resources.Requests[corev1.ResourceMemory]; ok && lim.Cmp(req) < 0 {
			missing = append(missing, "limits.memory below requests.memory")
		}
		if len(missing) > 0 {
			r.Fail("resources: cpu and memory requests, a memory limit", subject, "missing %s", strings.Join(missing, ", "))
		} else {
			r.Pass("resources: cpu and memory requests, a memory limit", subject)
		}

		// Image pinned to a tag.
		img := c.Image
		last := img[strings.LastIndex(img, "/")+1:]
		if !strings.Contains(last, ":") && !strings.Contains(img, "@") || strings.HasSuffix(img, ":latest") {
			r.Fail("image has a version tag", subject, "image %q", img)
		} else {
			r.Pass("image has a version tag", subject)
		}

		// Mounts name volumes of the pod.
		vols := map[string]*corev1.Volume{}
		for i := range pod.Volumes {
			vols[pod.Volumes[i].Name] = &pod.Volumes[i]
		}
		for _, m := range c.VolumeMounts {
			if vols[m.Name] == nil {
				r.Fail("volume mounts name pod volumes", subject, "mount %q has no volume", m.Name)
			}
		}
		r.Pass("volume mounts name pod volumes", subject)
	}
	// ConfigMap volumes name a rendered ConfigMap.
	cms := map[string]bool{}
	for _, cm := range byKind[*corev1.ConfigMap](objs) {
		cms[cm.Name] = true
	}
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && !cms[v.ConfigMap.Name] {
			r.Fail("ConfigMap volumes name a rendered ConfigMap", name, "volume %q: ConfigMap %q is not rendered", v.Name, v.ConfigMap.Name)
		}
	}
	r.Pass("ConfigMap volumes name a rendered ConfigMap", name)
}

func containsCap(caps []corev1.Capability, want corev1.Capability) bool {
	for _, c := range caps {
		if c == want {
			return true
		}
	}
	return false
}

func checkProbe(r *Report, subject, which string, p *corev1.Probe, wantPath string, ports []corev1.ContainerPort) {
	check := "probes: liveness /healthz and readiness /readyz on a container port"
	if p == nil {
		r.Fail(check, subject, "no %s probe", which)
		return
	}
	if p.HTTPGet == nil {
		r.Fail(check, subject, "%s probe is not an HTTP GET", which)
		return
	}
	if p.HTTPGet.Path != wantPath {
		r.Fail(check, subject, "%s probe path %q, want %q", which, p.HTTPGet.Path, wantPath)
		return
	}
	if _, ok := resolvePort(p.HTTPGet.Port, ports); !ok {
		r.Fail(check, subject, "%s probe port %s is not a container port", which, p.HTTPGet.Port.String())
		return
	}
	r.Pass(check, subject)
}

// resolvePort finds a named or numbered port among a container's ports.
func resolvePort(p intstr.IntOrString, ports []corev1.ContainerPort) (int32, bool) {
	for _, cp := range ports {
		if p.Type == intstr.String && cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
		if p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// RelayFlags are the options of `cpn-relay run` (relay/src/main.rs).
type RelayFlags struct {
	Values  map[string]string
	Headers []string
	XProps  []string
}

var relayValueFlags = map[string]string{
	"--config": "--config", "-c": "--config", "--brokers": "--brokers", "--topic": "--topic",
	"--group": "--group", "--instance-id": "--instance-id", "--group-protocol": "--group-protocol",
	"--target-url": "--target-url", "--dlq-topic": "--dlq-topic", "--metrics-listen": "--metrics-listen",
	"--header": "--header", "-H": "--header", "-X": "-X",
}

// ParseRelayArgs parses `run` and its flags, after $(VAR) expansion.
func ParseRelayArgs(args []string) (RelayFlags, error) {
	f := RelayFlags{Values: map[string]string{}}
	if len(args) == 0 || args[0] != "run" {
		return f, fmt.Errorf("args must start with the subcommand run, got %q", args)
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--json-logs" {
			f.Values["--json-logs"] = "true"
			continue
		}
		name, value, inline := strings.Cut(a, "=")
		if !inline {
			name = a
		}
		if strings.HasPrefix(a, "-X") && len(a) > 2 && !strings.HasPrefix(a, "-X=") {
			name, value, inline = "-X", a[2:], true
		}
		canon, ok := relayValueFlags[name]
		if !ok {
			return f, fmt.Errorf("unknown option %q for cpn-relay run", a)
		}
		if !inline {
			if i+1 >= len(args) {
				return f, fmt.Errorf("option %s needs a value", a)
			}
			i++
			value = args[i]
		}
		switch canon {
		case "--header":
			f.Headers = append(f.Headers, value)
		case "-X":
			f.XProps = append(f.XProps, value)
		default:
			f.Values[canon] = value
		}
	}
	return f, nil
}

// envValue is the literal value of a container's env var ("" and false when
// it is unset or comes from a reference).
func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
	}
	return "", false
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func tomlGet(t map[string]any, keys ...string) (any, bool) {
	var cur any = t
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[k]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func tomlString(t map[string]any, def string, keys ...string) string {
	if v, ok := tomlGet(t, keys...); ok {
		if s, ok := v.(string); ok {
			return s
		}
	}
	return def
}

func checkRelay(w *Workload, c *corev1.Container, in Input, r *Report) *Relay {
	name := w.String()
	pod := &w.Template.Spec
	rl := &Relay{Workload: w, Container: c}

	flags, err := ParseRelayArgs(c.Args)
	if err != nil {
		r.Fail("relay: command line parses as cpn-relay run", name, "%v", err)
		return nil
	}
	r.Pass("relay: command line parses as cpn-relay run", name)
	rl.Flags = flags

	// --config names a key of a mounted, rendered ConfigMap.
	cfgPath := flags.Values["--config"]
	if cfgPath == "" {
		cfgPath, _ = envValue(c, "CPN_RELAY_CONFIG")
	}
	rl.ConfigPath = cfgPath
	if cfgPath == "" {
		r.Fail("relay: --config names a mounted ConfigMap key", name, "no --config and no CPN_RELAY_CONFIG")
	} else {
		found := false
		for _, m := range c.VolumeMounts {
			dir := strings.TrimSuffix(m.MountPath, "/")
			if path.Dir(cfgPath) != dir {
				continue
			}
			for _, v := range pod.Volumes {
				if v.Name != m.Name || v.ConfigMap == nil {
					continue
				}
				for _, cm := range byKind[*corev1.ConfigMap](in.Objects) {
					if cm.Name == v.ConfigMap.Name {
						if _, ok := cm.Data[path.Base(cfgPath)]; ok {
							rl.ConfigMap, rl.ConfigKey, found = cm, path.Base(cfgPath), true
						}
					}
				}
			}
		}
		if !found {
			r.Fail("relay: --config names a mounted ConfigMap key", name, "%s is not a key of a rendered ConfigMap mounted at %s", cfgPath, path.Dir(cfgPath))
		} else {
			r.Pass("relay: --config names a mounted ConfigMap key", name)
		}
	}

	rl.TOML = map[string]any{}
	if rl.ConfigMap != nil {
		if err := toml.Unmarshal([]byte(rl.ConfigMap.Data[rl.ConfigKey]), &rl.TOML); err != nil {
			r.Fail("relay: the ConfigMap's relay.toml is valid TOML", name, "%v", err)
		} else {
			r.Pass("relay: the ConfigMap's relay.toml is valid TOML", name)
		}
	}

	// Grace period above the drain deadline.
	deadline := int64(relayDefaultDeadlineMs)
	source := "the relay's default"
	if v, ok := tomlGet(rl.TOML, "shutdown", "deadline_ms"); ok {
		n, ok := v.(int64)
		if !ok {
			r.Fail("relay: terminationGracePeriodSeconds > shutdown.deadline_ms + 5 s", name, "shutdown.deadline_ms is %v (%T), not an integer", v, v)
			return nil
		}
		deadline, source = n, "relay.toml"
	}
	if v, ok := envValue(c, "CPN_SHUTDOWN_DEADLINE_MS"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			r.Fail("relay: terminationGracePeriodSeconds > shutdown.deadline_ms + 5 s", name, "CPN_SHUTDOWN_DEADLINE_MS=%q is not an integer", v)
			return nil
		}
		deadline, source = n, "CPN_SHUTDOWN_DEADLINE_MS"
	}
	grace := int64(kubeDefaultGrace)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	need := (deadline+999)/1000 + graceMarginSeconds
	if grace < need {
		r.Fail("relay: terminationGracePeriodSeconds > shutdown.deadline_ms + 5 s", name, "grace %d s, deadline %d ms (%s): needs at least %d s", grace, deadline, source, need)
	} else {
		r.Pass("relay: terminationGracePeriodSeconds > shutdown.deadline_ms + 5 s", fmt.Sprintf("%s (%d s > %d ms)", name, grace, deadline))
	}

	// Metrics reachable by the kubelet, on the probed port.
	listen := tomlString(rl.TOML, relayDefaultMetricsListen, "observability", "metrics_listen")
	if v, ok := envValue(c, "CPN_OBSERVABILITY_METRICS_LISTEN"); ok {
		listen = v
	}
	if v, ok := flags.Values["--metrics-listen"]; ok {
		listen = v
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		r.Fail("relay: metrics listen on all interfaces, on the probed port", name, "metrics_listen %q: %v", listen, err)
	} else if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		r.Fail("relay: metrics listen on all interfaces, on the probed port", name, "metrics_listen %q is not reachable by the kubelet (want 0.0.0.0 or [::])", listen)
	} else if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil {
		r.Fail("relay: metrics listen on all interfaces, on the probed port", name, "no liveness probe")
	} else if p, ok := resolvePort(c.LivenessProbe.HTTPGet.Port, c.Ports); !ok || strconv.Itoa(int(p)) != port {
		r.Fail("relay: metrics listen on all interfaces, on the probed port", name, "metrics_listen %q, but the probes use port %s", listen, c.LivenessProbe.HTTPGet.Port.String())
	} else {
		r.Pass("relay: metrics listen on all interfaces, on the probed port", name)
	}

	// Static membership only with a per-pod id.
	instEnv := envVar(c, "CPN_KAFKA_INSTANCE_ID")
	_, instTOML := tomlGet(rl.TOML, "kafka", "instance_id")
	_, instFlag := flags.Values["--instance-id"]
	check := "relay: static membership only from a StatefulSet pod name"
	switch w.Obj.Kind {
	case "StatefulSet":
		if instEnv == nil || instEnv.ValueFrom == nil || instEnv.ValueFrom.FieldRef == nil || instEnv.ValueFrom.FieldRef.FieldPath != "metadata.name" {
			r.Fail(check, name, "CPN_KAFKA_INSTANCE_ID must come from fieldRef metadata.name")
		} else if instFlag || instTOML {
			r.Fail(check, name, "--instance-id or kafka.instance_id would override the pod name")
		} else {
			r.Pass(check, name)
		}
	default:
		if instEnv != nil || instTOML || instFlag {
			r.Fail(check, name, "a %s's pods would share one group.instance.id and fence each other", w.Obj.Kind)
		} else {
			r.Pass(check, name)
		}
	}

	// No injected service variables (CPN_KAFKA_... from a Service named cpn-kafka).
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		r.Fail("relay: enableServiceLinks is false", name, "service links would inject <SERVICE>_* env vars, which the relay refuses when they look like CPN_<SECTION>_ settings")
	} else {
		r.Pass("relay: enableServiceLinks is false", name)
	}

	// CPN_<SECTION>_ env names are settings the relay knows.
	if in.RelayEnv != nil {
		bad := []string{}
		for _, e := range c.Env {
			for _, p := range in.RelaySections {
				if strings.HasPrefix(e.Name, p) && !in.RelayEnv[e.Name] {
					bad = append(bad, e.Name)
				}
			}
		}
		if len(bad) > 0 {
			r.Fail("relay: CPN_<SECTION>_<KEY> env names are relay settings", name, "unknown to the relay (it refuses to start): %s", strings.Join(bad, ", "))
		} else {
			r.Pass("relay: CPN_<SECTION>_<KEY> env names are relay settings", name)
		}
	}

	// Effective Kafka names (flags win over env over the file).
	pick := func(flag, env, def string, keys ...string) string {
		v := tomlString(rl.TOML, def, keys...)
		if e, ok := envValue(c, env); ok {
			v = e
		}
		if f, ok := flags.Values[flag]; ok {
			v = f
		}
		return v
	}
	rl.Brokers = pick("--brokers", "CPN_KAFKA_BROKERS", relayDefaultBrokers, "kafka", "brokers")
	rl.Topic = pick("--topic", "CPN_KAFKA_TOPIC", relayDefaultTopic, "kafka", "topic")
	rl.Group = pick("--group", "CPN_KAFKA_GROUP", relayDefaultGroup, "kafka", "group")
	return rl
}

func checkIngest(w *Workload, c *corev1.Container, r *Report) {
	name := w.String()
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		r.Fail("ingest: runs cpn-producer serve, listening on all interfaces", name, "args %q do not start with serve", c.Args)
		return
	}
	listen := "127.0.0.1:8080"
	if v, ok := envValue(c, "CPN_LISTEN"); ok {
		listen = v
	}
	for i := 1; i < len(c.Args); i++ {
		if c.Args[i] == "--listen" && i+1 < len(c.Args) {
			listen = c.Args[i+1]
		} else if v, ok := strings.CutPrefix(c.Args[i], "--listen="); ok {
			listen = v
		}
	}
	host, _, err := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsUnspecified() {
		r.Fail("ingest: runs cpn-producer serve, listening on all interfaces", name, "--listen %q is not reachable from the Service", listen)
		return
	}
	r.Pass("ingest: runs cpn-producer serve, listening on all interfaces", name)
}

// checkConfigMaps: no secret value in a ConfigMap.
func checkConfigMaps(objs []*Object, r *Report) {
	check := "no secret value in a ConfigMap"
	var secretValues []string
	for _, s := range byKind[*corev1.Secret](objs) {
		for _, v := range s.Data {
			if len(v) >= 4 {
				secretValues = append(secretValues, string(v))
			}
		}
		for _, v := range s.StringData {
			if len(v) >= 4 {
				secretValues = append(secretValues, v)
			}
		}
	}
	for _, cm := range byKind[*corev1.ConfigMap](objs) {
		subject := "ConfigMap/" + cm.Name
		var problems []string
		keys := make([]string, 0, len(cm.Data))
		for k := range cm.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			data := cm.Data[k]
			for _, sv := range secretValues {
				if strings.Contains(data, sv) {
					problems = append(problems, fmt.Sprintf("%s holds the value of a rendered Secret", k))
				}
			}
			if strings.Contains(data, "-----BEGIN") {
				problems = append(problems, fmt.Sprintf("%s holds a PEM block (a key or certificate belongs in a Secret)", k))
			}
			if strings.HasSuffix(k, ".toml") {
				var t map[string]any
				if err := toml.Unmarshal([]byte(data), &t); err != nil {
					problems = append(problems, fmt.Sprintf("%s is not valid TOML: %v", k, err))
					continue
				}
				problems = append(problems, LiteralSecretsInRelayTOML(t)...)
			}
		}
		if len(cm.BinaryData) > 0 {
			problems = append(problems, "binaryData is not expected in the chart's ConfigMaps")
		}
		if len(problems) > 0 {
			r.Fail(check, subject, "%s", strings.Join(problems, "; "))
		} else {
			r.Pass(check, subject)
		}
	}
}

// LiteralSecretsInRelayTOML lists the secret-bearing keys of a relay
// configuration that hold a value instead of { env } / { file }.
func LiteralSecretsInRelayTOML(t map[string]any) []string {
	var problems []string
	isRef := func(v any) bool {
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return false
		}
		_, env := m["env"]
		_, file := m["file"]
		return env || file
	}
	for _, keys := range [][]string{
		{"target", "auth", "password"},
		{"target", "auth", "client_secret"},
		{"target", "proxy", "password"},
	} {
		if v, ok := tomlGet(t, keys...); ok && !isRef(v) {
			problems = append(problems, fmt.Sprintf("%s is a literal value (use { env = ... } or { file = ... })", strings.Join(keys, ".")))
		}
	}
	if v, ok := tomlGet(t, "target", "signing", "secrets"); ok {
		list, _ := v.([]any)
		for i, s := range list {
			if !isRef(s) {
				problems = append(problems, fmt.Sprintf("target.signing.secrets[%d] is a literal value", i))
			}
		}
	}
	if v, ok := tomlGet(t, "target", "headers"); ok {
		if m, ok := v.(map[string]any); ok {
			for k := range m {
				if secretName.MatchString(k) {
					problems = append(problems, fmt.Sprintf("target.headers.%q looks like a secret header", k))
				}
			}
		}
	}
	if v, ok := tomlGet(t, "kafka", "properties"); ok {
		if m, ok := v.(map[string]any); ok {
			for k := range m {
				if regexp.MustCompile(`(?i)(password|secret|\.pem$)`).MatchString(k) {
					problems = append(problems, fmt.Sprintf("kafka.properties.%q is a secret", k))
				}
			}
		}
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, y := range x {
				walk(prefix+"."+k, y)
			}
		case []any:
			for i, y := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), y)
			}
		case string:
			if strings.HasPrefix(x, "whsec_") {
				problems = append(problems, fmt.Sprintf("%s holds a webhook signing secret", strings.TrimPrefix(prefix, ".")))
			}
			if strings.Contains(x, "://") && strings.Contains(x, "@") {
				if at := strings.Index(x, "@"); strings.Contains(x[strings.Index(x, "://")+3:at], ":") {
					problems = append(problems, fmt.Sprintf("%s holds a URL with a password", strings.TrimPrefix(prefix, ".")))
				}
			}
		}
	}
	walk("", t)
	sort.Strings(problems)
	return problems
}

// checkPodSecrets: secrets reach the pods by reference only.
func checkPodSecrets(workloads []*Workload, r *Report) {
	check := "pod spec: secrets only by reference (secretKeyRef, $(VAR), Secret volumes)"
	for _, w := range workloads {
		var problems []string
		for _, c := range w.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil && e.Value != "" && secretName.MatchString(e.Name) {
					problems = append(problems, fmt.Sprintf("env %s has a literal value", e.Name))
				}
			}
			for i, a := range c.Args {
				var kv string
				switch {
				case a == "-X" && i+1 < len(c.Args):
					kv = c.Args[i+1]
				case (a == "--header" || a == "-H") && i+1 < len(c.Args):
					if n, v, ok := strings.Cut(c.Args[i+1], ":"); ok && secretName.MatchString(n) && !envReference.MatchString(strings.TrimSpace(v)) {
						problems = append(problems, fmt.Sprintf("header %s has a literal value", n))
					}
					continue
				default:
					continue
				}
				if k, v, ok := strings.Cut(kv, "="); ok && regexp.MustCompile(`(?i)(password|secret)`).MatchString(k) && !envReference.MatchString(v) {
					problems = append(problems, fmt.Sprintf("-X %s has a literal value", k))
				}
			}
		}
		if len(problems) > 0 {
			r.Fail(check, w.String(), "%s", strings.Join(problems, "; "))
		} else {
			r.Pass(check, w.String())
		}
	}
}

func findWorkload(workloads []*Workload, kind, name string) *Workload {
	for _, w := range workloads {
		if w.Obj.Kind == kind && w.Obj.Name == name {
			return w
		}
	}
	return nil
}

func checkScaledObjects(objs []*Object, workloads []*Workload, relays []*Relay, r *Report) {
	check := "KEDA: minReplicaCount <= maxReplicaCount <= partitions, kafka lag trigger of the relay's group, target without replicas"
	for _, so := range byKind[*kedav1alpha1.ScaledObject](objs) {
		subject := "ScaledObject/" + so.Name
		var problems []string
		partitions, err := strconv.Atoi(so.Annotations[partitionsAnnotation])
		if err != nil || partitions < 1 {
			problems = append(problems, fmt.Sprintf("annotation %s must carry kafka.partitions, got %q", partitionsAnnotation, so.Annotations[partitionsAnnotation]))
		}
		if so.Spec.MaxReplicaCount == nil {
			problems = append(problems, "maxReplicaCount is not set (KEDA's default is 100)")
		} else if partitions > 0 && int(*so.Spec.MaxReplicaCount) > partitions {
			problems = append(problems, fmt.Sprintf("maxReplicaCount %d is above the %d partitions", *so.Spec.MaxReplicaCount, partitions))
		}
		if so.Spec.MinReplicaCount != nil && so.Spec.MaxReplicaCount != nil && *so.Spec.MinReplicaCount > *so.Spec.MaxReplicaCount {
			problems = append(problems, fmt.Sprintf("minReplicaCount %d is above maxReplicaCount %d", *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount))
		}
		ref := so.Spec.ScaleTargetRef
		var w *Workload
		var relay *Relay
		if ref != nil {
			kind := ref.Kind
			if kind == "" {
				kind = "Deployment"
			}
			w = findWorkload(workloads, kind, ref.Name)
		}
		if w == nil {
			problems = append(problems, fmt.Sprintf("scaleTargetRef %+v is not a rendered workload", ref))
		} else {
			if ref.APIVersion != "" && ref.APIVersion != "apps/v1" {
				problems = append(problems, fmt.Sprintf("scaleTargetRef apiVersion %q", ref.APIVersion))
			}
			if w.Replicas != nil {
				problems = append(problems, fmt.Sprintf("%s sets replicas: it would fight KEDA's HPA", w))
			}
			for _, rl := range relays {
				if rl.Workload == w {
					relay = rl
				}
			}
			if relay == nil {
				problems = append(problems, fmt.Sprintf("%s does not run cpn-relay", w))
			}
		}
		kafkaTriggers := 0
		for _, t := range so.Spec.Triggers {
			if t.Type != "kafka" {
				problems = append(problems, fmt.Sprintf("trigger type %q (the relay scales on its consumer group lag)", t.Type))
				continue
			}
			kafkaTriggers++
			md := t.Metadata
			for _, k := range []string{"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} {
				if md[k] == "" {
					problems = append(problems, fmt.Sprintf("kafka trigger without %s", k))
				}
			}
			if n, err := strconv.Atoi(md["lagThreshold"]); md["lagThreshold"] != "" && (err != nil || n < 1) {
				problems = append(problems, fmt.Sprintf("lagThreshold %q is not a positive integer", md["lagThreshold"]))
			}
			if md["allowIdleConsumers"] == "true" {
				problems = append(problems, "allowIdleConsumers would scale past the partitions")
			}
			if relay != nil {
				if md["bootstrapServers"] != relay.Brokers {
					problems = append(problems, fmt.Sprintf("bootstrapServers %q, the relay uses %q", md["bootstrapServers"], relay.Brokers))
				}
				if md["consumerGroup"] != relay.Group {
					problems = append(problems, fmt.Sprintf("consumerGroup %q, the relay's group is %q", md["consumerGroup"], relay.Group))
				}
				if md["topic"] != relay.Topic {
					problems = append(problems, fmt.Sprintf("topic %q, the relay reads %q", md["topic"], relay.Topic))
				}
			}
		}
		if kafkaTriggers != 1 {
			problems = append(problems, fmt.Sprintf("%d kafka triggers, want 1", kafkaTriggers))
		}
		if len(problems) > 0 {
			r.Fail(check, subject, "%s", strings.Join(problems, "; "))
		} else {
			r.Pass(check, fmt.Sprintf("%s (max %d <= %d partitions)", subject, *so.Spec.MaxReplicaCount, partitions))
		}
	}
}

func checkHPAs(objs []*Object, workloads []*Workload, r *Report) {
	check := "HPA: CPU utilization of a rendered workload that has no replicas field and requests CPU"
	for _, h := range byKind[*autoscalingv2.HorizontalPodAutoscaler](objs) {
		subject := "HorizontalPodAutoscaler/" + h.Name
		var problems []string
		w := findWorkload(workloads, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		if w == nil {
			problems = append(problems, fmt.Sprintf("scaleTargetRef %s/%s is not rendered", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name))
		} else {
			if w.Replicas != nil {
				problems = append(problems, fmt.Sprintf("%s sets replicas: every upgrade would reset the HPA's count", w))
			}
			for _, c := range w.Template.Spec.Containers {
				if q, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok || q.Cmp(resource.MustParse("1m")) < 0 {
					problems = append(problems, fmt.Sprintf("container %s requests no CPU: utilization is undefined", c.Name))
				}
			}
		}
		cpu := false
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
				m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil {
				cpu = true
			}
		}
		if !cpu {
			problems = append(problems, "no CPU utilization metric")
		}
		if h.Spec.MinReplicas != nil && *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			problems = append(problems, "minReplicas above maxReplicas")
		}
		if len(problems) > 0 {
			r.Fail(check, subject, "%s", strings.Join(problems, "; "))
		} else {
			r.Pass(check, subject)
		}
	}
}

func matchingWorkloads(sel *metav1.LabelSelector, workloads []*Workload) ([]*Workload, error) {
	var out []*Workload
	for _, w := range workloads {
		ok, err := selects(sel, w.Template.Labels)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, w)
		}
	}
	return out, nil
}

func checkPDBs(objs []*Object, workloads []*Workload, r *Report) {
	check := "PDB: selects exactly one workload, maxUnavailable set"
	for _, p := range byKind[*policyv1.PodDisruptionBudget](objs) {
		subject := "PodDisruptionBudget/" + p.Name
		ws, err := matchingWorkloads(p.Spec.Selector, workloads)
		switch {
		case err != nil:
			r.Fail(check, subject, "%v", err)
		case len(ws) != 1:
			r.Fail(check, subject, "selects %d workloads", len(ws))
		case p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil:
			r.Fail(check, subject, "neither maxUnavailable nor minAvailable")
		case p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.Type == intstr.Int && p.Spec.MaxUnavailable.IntVal < 1:
			r.Fail(check, subject, "maxUnavailable %d blocks every drain", p.Spec.MaxUnavailable.IntVal)
		default:
			r.Pass(check, subject)
		}
	}
}

func checkServices(objs []*Object, workloads []*Workload, r *Report) {
	check := "Service: selects a workload, target ports are container ports"
	for _, s := range byKind[*corev1.Service](objs) {
		subject := "Service/" + s.Name
		if len(s.Spec.Selector) == 0 {
			r.Fail(check, subject, "no selector")
			continue
		}
		ws, _ := matchingWorkloads(&metav1.LabelSelector{MatchLabels: s.Spec.Selector}, workloads)
		if len(ws) == 0 {
			r.Fail(check, subject, "selects no rendered workload")
			continue
		}
		var problems []string
		for _, p := range s.Spec.Ports {
			tp := p.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(p.Port)
			}
			for _, w := range ws {
				found := false
				for _, c := range w.Template.Spec.Containers {
					if _, ok := resolvePort(tp, c.Ports); ok {
						found = true
					}
				}
				if !found {
					problems = append(problems, fmt.Sprintf("port %s: target %s is not a port of %s", p.Name, tp.String(), w))
				}
			}
		}
		if len(problems) > 0 {
			r.Fail(check, subject, "%s", strings.Join(problems, "; "))
		} else {
			r.Pass(check, subject)
		}
	}
}

func checkServiceMonitors(objs []*Object, r *Report) {
	check := "ServiceMonitor: selects exactly one Service, scrapes a named port's /metrics"
	services := byKind[*corev1.Service](objs)
	for _, sm := range byKind[*monitoringv1.ServiceMonitor](objs) {
		subject := "ServiceMonitor/" + sm.Name
		sel := sm.Spec.Selector
		var matched []*corev1.Service
		for _, s := range services {
			if ok, err := selects(&sel, s.Labels); err == nil && ok {
				matched = append(matched, s)
			}
		}
		if len(matched) != 1 {
			r.Fail(check, subject, "selects %d Services (want 1: a second one scrapes every pod twice)", len(matched))
			continue
		}
		var problems []string
		if len(sm.Spec.Endpoints) == 0 {
			problems = append(problems, "no endpoints")
		}
		for _, ep := range sm.Spec.Endpoints {
			if ep.Port == "" {
				problems = append(problems, "an endpoint without a port name")
				continue
			}
			found := false
			for _, p := range matched[0].Spec.Ports {
				if p.Name == ep.Port {
					found = true
				}
			}
			if !found {
				problems = append(problems, fmt.Sprintf("port %q is not a port of Service/%s", ep.Port, matched[0].Name))
			}
			if ep.Path != "" && ep.Path != "/metrics" {
				problems = append(problems, fmt.Sprintf("path %q", ep.Path))
			}
		}
		if len(problems) > 0 {
			r.Fail(check, subject, "%s", strings.Join(problems, "; "))
		} else {
			r.Pass(check, subject)
		}
	}
}

func checkServiceAccounts(objs []*Object, workloads []*Workload, r *Report) {
	check := "pods use a rendered ServiceAccount (or default), without an API token"
	sas := map[string]bool{"default": true, "": true}
	for _, sa := range byKind[*corev1.ServiceAccount](objs) {
		sas[sa.Name] = true
	}
	for _, w := range workloads {
		spec := w.Template.Spec
		switch {
		case !sas[spec.ServiceAccountName]:
			r.Fail(check, w.String(), "ServiceAccount %q is not rendered", spec.ServiceAccountName)
		case spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken:
			r.Fail(check, w.String(), "the API token is mounted (neither binary needs it)")
		default:
			r.Pass(check, w.String())
		}
	}
}
