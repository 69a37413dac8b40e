package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one rendered document, decoded into its typed Go object.
type Object struct {
	// Index is the document's position in its stream (0-based, empty
	// documents not counted).
	Index      int
	APIVersion string
	Kind       string
	Name       string
	// Typed is a pointer to the k8s.io/api (or KEDA, prometheus-operator) type.
	Typed any
}

func (o *Object) String() string { return fmt.Sprintf("%s/%s", o.Kind, o.Name) }

// kinds maps apiVersion/kind to a new typed object. A document of any other
// apiVersion/kind is refused: the chart renders nothing else.
var kinds = map[string]func() any{
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() any { return &corev1.Secret{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                      func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"keda.sh/v1alpha1/ScaledObject":          func() any { return &kedav1alpha1.ScaledObject{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any {
		return &monitoringv1.ServiceMonitor{}
	},
}

// KnownKinds lists the apiVersion/kind pairs the checker decodes.
func KnownKinds() []string {
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SplitDocuments splits a multi-document YAML stream; documents holding only
// comments or whitespace are dropped.
func SplitDocuments(r io.Reader) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs), err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue
		}
		docs = append(docs, doc)
	}
}

// DecodeStrict decodes one YAML document into the typed object of its
// apiVersion/kind. Refused: an unknown apiVersion/kind, a field the type
// does not have (a typo such as livenesProbe), a field of the wrong case
// (Replicas), a duplicate key, a value of the wrong type.
func DecodeStrict(index int, doc []byte) (*Object, error) {
	// Duplicate keys are an error here already.
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("document %d: not valid YAML: %w", index, err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, fmt.Errorf("document %d: not an object: %w", index, err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, fmt.Errorf("document %d: apiVersion and kind are required", index)
	}
	key := tm.APIVersion + "/" + tm.Kind
	var named struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if json.Unmarshal(j, &named) == nil && named.Metadata.Name != "" {
		key += " " + named.Metadata.Name
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("document %d: unknown apiVersion/kind %s (known: %s)", index, tm.APIVersion+"/"+tm.Kind, strings.Join(KnownKinds(), ", "))
	}
	typed := newObj()
	// sigs.k8s.io/json is the decoder of the Kubernetes API server: field
	// names are matched case-sensitively, and the strict options report
	// unknown and duplicate fields.
	strictErrs, err := sigsjson.UnmarshalStrict(j, typed, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("document %d (%s): %w", index, key, err)
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("document %d (%s): %s", index, key, strings.Join(msgs, "; "))
	}
	meta, ok := typed.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("document %d (%s): no object metadata", index, key)
	}
	if meta.GetName() == "" {
		return nil, fmt.Errorf("document %d (%s): metadata.name is empty", index, key)
	}
	return &Object{Index: index, APIVersion: tm.APIVersion, Kind: tm.Kind, Name: meta.GetName(), Typed: typed}, nil
}

// DecodeAll splits a stream and decodes every document strictly; it returns
// the objects it could decode and one error per document it could not.
func DecodeAll(r io.Reader) ([]*Object, []error) {
	docs, err := SplitDocuments(r)
	if err != nil {
		return nil, []error{err}
	}
	var objs []*Object
	var errs []error
	for i, doc := range docs {
		o, err := DecodeStrict(i, doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errs
}
