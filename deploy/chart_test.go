package deploy

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli/values"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ and prometheus/rules.yaml")

const (
	chartDir    = "helm/kiln"
	releaseName = "kiln"
	namespace   = "kiln"
	serverName  = "kiln-server"
	gatewayName = "kiln-gateway"
	// kubeVersion is helm template's --kube-version: the chart needs 1.30
	// (preStop sleep, PodDisruptionBudget and autoscaling/v2 at GA)
	kubeVersion = "1.34.0"
)

// valuesCases are the values files the chart is rendered with; those with a
// golden file are checked in as `helm template` output.
var valuesCases = []struct {
	name   string
	files  []string
	golden string
}{
	{"default", nil, "testdata/default.yaml"},
	{"gpu", []string{"helm/kiln/values-gpu.yaml"}, "testdata/gpu.yaml"},
	{"keda", []string{"examples/values-keda.yaml"}, ""},
	{"fetch", []string{"examples/values-fetch.yaml"}, ""},
	{"static", []string{"examples/values-static.yaml"}, ""},
	{"gpu+keda", []string{"helm/kiln/values-gpu.yaml", "examples/values-keda.yaml"}, ""},
	{"gpu+multigpu", []string{"helm/kiln/values-gpu.yaml", "examples/values-multigpu.yaml"}, "testdata/multigpu.yaml"},
}

// render is `helm template kiln deploy/helm/kiln --namespace kiln --kube-version 1.34.0 -f FILE...`
// through the Helm SDK: a client-only dry-run install.
func render(files ...string) (string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return "", err
	}
	vals, err := (&values.Options{ValueFiles: files}).MergeValues(nil)
	if err != nil {
		return "", err
	}
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = releaseName
	inst.Namespace = namespace
	inst.Replace = true
	if inst.KubeVersion, err = common.ParseKubeVersion(kubeVersion); err != nil {
		return "", err
	}
	r, err := inst.Run(ch, vals)
	if err != nil {
		return "", err
	}
	rel, ok := r.(*release.Release)
	if !ok {
		return "", fmt.Errorf("helm returned a %T", r)
	}
	return strings.TrimSpace(rel.Manifest) + "\n", nil
}

// object is one rendered document, decoded.
type object struct {
	source, kind, name string
	raw                []byte
	obj                any
}

// strict decodes the built-in kinds and fails on unknown or duplicate fields.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// decode splits a manifest and decodes every object strictly into its Go
// type: k8s.io/api for the built-in kinds, the Prometheus Operator's types
// for ServiceMonitor and PrometheusRule, scaledObject for KEDA's.
func decode(t *testing.T, manifest string) []object {
	t.Helper()
	var objs []object
	for _, doc := range strings.Split(manifest, "\n---\n") {
		doc = strings.TrimPrefix(strings.TrimSpace(doc), "---\n")
		if doc == "" {
			continue
		}
		src, _, _ := strings.Cut(doc, "\n")
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s: %v\n%s", src, err, doc)
		}
		o := object{source: strings.TrimPrefix(src, "# Source: "), kind: meta.Kind, name: meta.Metadata.Name, raw: []byte(doc)}
		var err error
		switch meta.APIVersion {
		case "monitoring.coreos.com/v1":
			switch meta.Kind {
			case "ServiceMonitor":
				o.obj, err = strictYAML[monitoringv1.ServiceMonitor](doc)
			case "PrometheusRule":
				o.obj, err = strictYAML[monitoringv1.PrometheusRule](doc)
			default:
				err = fmt.Errorf("unexpected kind %s", meta.Kind)
			}
		case "keda.sh/v1alpha1":
			if meta.Kind != "ScaledObject" {
				err = fmt.Errorf("unexpected kind %s", meta.Kind)
			} else {
				o.obj, err = strictYAML[scaledObject](doc)
			}
		default:
			var ro runtime.Object
			ro, _, err = strict.Decode([]byte(doc), nil, nil)
			o.obj = ro
		}
		if err != nil {
			t.Fatalf("%s: %s %s does not decode strictly: %v\n%s", o.source, meta.Kind, meta.Metadata.Name, err, doc)
		}
		if meta.Metadata.Name == "" {
			t.Errorf("%s: %s without a name", o.source, meta.Kind)
		}
		objs = append(objs, o)
	}
	return objs
}

func strictYAML[T any](doc string) (*T, error) {
	var v T
	if err := yaml.UnmarshalStrict([]byte(doc), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// scaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1) the
// chart writes, with KEDA's field names: decoding strictly into it catches a
// misspelt or misplaced field. (KEDA's own Go module brings a large
// dependency tree for one type.)
type scaledObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Advanced        struct {
			HorizontalPodAutoscalerConfig struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior"`
			} `json:"horizontalPodAutoscalerConfig"`
		} `json:"advanced"`
		Triggers []struct {
			Type       string            `json:"type"`
			MetricType string            `json:"metricType"`
			Metadata   map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

func find[T any](t *testing.T, objs []object, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			v, ok := o.obj.(*T)
			if !ok {
				t.Fatalf("%s %s decoded as %T", kind, name, o.obj)
			}
			return v
		}
	}
	t.Fatalf("no %s %s among %d objects", kind, name, len(objs))
	return nil
}

func has(objs []object, kind string) bool {
	return slices.ContainsFunc(objs, func(o object) bool { return o.kind == kind })
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

// flagValue returns the value of --name=value among args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestChartRenders renders the chart with every values file, compares the
// checked-in ones with their golden files, decodes every object strictly
// and checks what ties the objects together: probes on the KServe health
// endpoints, the drain timing, GPU resources, the build initContainer, the
// autoscaler's target and metric, the RBAC for EndpointSlices.
func TestChartRenders(t *testing.T) {
	for _, tc := range valuesCases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := render(tc.files...)
			if err != nil {
				t.Fatal(err)
			}
			if tc.golden != "" {
				golden(t, tc.golden, []byte(out))
			}
			objs := decode(t, out)
			checkChart(t, tc.name, tc.files, objs)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./deploy -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered output (go test ./deploy -run %s -update rewrites it); first difference:\n%s", path, t.Name(), firstDiff(string(want), string(got)))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, x, y)
		}
	}
	return ""
}

func checkChart(t *testing.T, name string, files []string, objs []object) {
	gpu := slices.Contains(files, "helm/kiln/values-gpu.yaml")
	static := name == "static"
	dep := find[appsv1.Deployment](t, objs, "Deployment", serverName)
	pod := dep.Spec.Template.Spec
	srv := container(t, pod.Containers, "server")
	if srv.Args[0] != "serve" {
		t.Errorf("server args %v", srv.Args)
	}

	// probes on the KServe v2 health endpoints, on the http port
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"startup", srv.StartupProbe, "/v2/health/ready"}, {"readiness", srv.ReadinessProbe, "/v2/health/ready"}, {"liveness", srv.LivenessProbe, "/v2/health/live"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v, want GET %s on port http", p.name, p.probe, p.path)
		}
	}

	// the drain: preStop sleep, then --exit-timeout, within the grace period
	exit, _ := flagValue(srv.Args, "exit-timeout")
	if exit != "30s" || srv.Lifecycle == nil || srv.Lifecycle.PreStop == nil || srv.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("exit timeout %q, lifecycle %+v", exit, srv.Lifecycle)
	}
	grace := *pod.TerminationGracePeriodSeconds
	if want := srv.Lifecycle.PreStop.Sleep.Seconds + 30 + 5; grace != want {
		t.Errorf("terminationGracePeriodSeconds %d, want preStop %d + exit timeout 30 + 5", grace, srv.Lifecycle.PreStop.Sleep.Seconds)
	}
	if _, ok := flagValue(srv.Args, "shutdown-grace"); !ok {
		t.Errorf("server args lack --shutdown-grace: %v", srv.Args)
	}

	// the plan cache and the initContainer building into it for this node
	planCache, _ := flagValue(srv.Args, "plan-cache")
	// without a repository volume or fetch step the image's bundled example is served
	_, hasRepo := flagValue(srv.Args, "model-repository")
	if wantRepo := gpu || name == "fetch"; hasRepo != wantRepo {
		t.Errorf("--model-repository in the server args: %v, want %v", hasRepo, wantRepo)
	}
	if hasRepo {
		b := container(t, pod.InitContainers, "build-plans")
		want := []string{"build", "--model-repository=/models", "--plan-cache=" + planCache}
		if !slices.Equal(b.Args, want) {
			t.Errorf("build-plans args %v, want %v", b.Args, want)
		}
		if b.Image != srv.Image {
			t.Errorf("build-plans image %s, server image %s", b.Image, srv.Image)
		}
	} else if len(pod.InitContainers) != 0 {
		t.Errorf("initContainers without a repository: %v", pod.InitContainers)
	}
	if name == "fetch" && pod.InitContainers[0].Name != "fetch-models" {
		t.Errorf("the first initContainer is %s, want fetch-models", pod.InitContainers[0].Name)
	}

	// every volume has one source (helm merges maps: a values file that
	// sets another source must null the default one)
	for _, v := range pod.Volumes {
		b, _ := json.Marshal(v.VolumeSource)
		var m map[string]any
		json.Unmarshal(b, &m)
		if len(m) != 1 {
			t.Errorf("volume %s has %d sources: %s", v.Name, len(m), b)
		}
	}

	// GPU resources, node selection, GPU metrics
	gpus := srv.Resources.Limits["nvidia.com/gpu"]
	gm, _ := flagValue(srv.Args, "allow-gpu-metrics")
	if gpu {
		// the pod's GPUs: values-gpu.yaml's one, or values-multigpu.yaml's four
		wantGPUs := int64(1)
		if slices.Contains(files, "examples/values-multigpu.yaml") {
			wantGPUs = 4
		}
		if gpus.Value() != wantGPUs || pod.NodeSelector["nvidia.com/gpu.present"] != "true" || len(pod.Tolerations) == 0 || gm != "true" {
			t.Errorf("GPU pod: nvidia.com/gpu %s (want %d), nodeSelector %v, tolerations %v, --allow-gpu-metrics=%s", gpus.String(), wantGPUs, pod.NodeSelector, pod.Tolerations, gm)
		}
		// the initContainer builds plans for the same GPUs the server places its instances on
		if b := container(t, pod.InitContainers, "build-plans"); b.Resources.Limits.Name("nvidia.com/gpu", "").Value() != wantGPUs {
			t.Errorf("build-plans GPUs %v, want %d", b.Resources.Limits, wantGPUs)
		}
		if !strings.HasSuffix(srv.Image, "-cuda") {
			t.Errorf("GPU image %s", srv.Image)
		}
	} else if !gpus.IsZero() || gm != "false" {
		t.Errorf("CPU pod with nvidia.com/gpu %s, --allow-gpu-metrics=%s", gpus.String(), gm)
	}

	// the headless Service, its ports named as the gateway and the ServiceMonitor expect
	svc := find[corev1.Service](t, objs, "Service", serverName)
	if svc.Spec.ClusterIP != "None" {
		t.Errorf("server Service clusterIP %q, want None (headless)", svc.Spec.ClusterIP)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s, pods have %q", k, v, dep.Spec.Template.Labels[k])
		}
	}
	pdb := find[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", serverName)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB %+v", pdb.Spec)
	}

	// the gateway may watch EndpointSlices, and does so as its ServiceAccount
	if !static {
		gw := find[appsv1.Deployment](t, objs, "Deployment", gatewayName)
		role := find[rbacv1.Role](t, objs, "Role", gatewayName)
		rule := role.Rules[0]
		if gw.Spec.Template.Spec.ServiceAccountName != gatewayName || !slices.Equal(rule.APIGroups, []string{"discovery.k8s.io"}) ||
			!slices.Equal(rule.Resources, []string{"endpointslices"}) || !slices.Equal(rule.Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("gateway account %q, role rules %+v", gw.Spec.Template.Spec.ServiceAccountName, role.Rules)
		}
		bind := find[rbacv1.RoleBinding](t, objs, "RoleBinding", gatewayName)
		if bind.RoleRef.Name != gatewayName || bind.Subjects[0].Name != gatewayName || bind.Subjects[0].Namespace != namespace {
			t.Errorf("role binding %+v", bind)
		}
		if v, _ := flagValue(container(t, gw.Spec.Template.Spec.Containers, "gateway").Args, "k8s-service"); v != namespace+"/"+serverName {
			t.Errorf("gateway discovers %q, want %s/%s", v, namespace, serverName)
		}
		find[corev1.ServiceAccount](t, objs, "ServiceAccount", gatewayName)
		find[corev1.Service](t, objs, "Service", gatewayName)
	}

	// autoscaling: the HPA's Pods metric is one the adapter rules serve, and
	// scale-down removes one pod per drain
	keda := strings.Contains(name, "keda")
	switch {
	case static:
		if has(objs, "HorizontalPodAutoscaler") || has(objs, "ScaledObject") || dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
			t.Errorf("static: autoscaler present or replicas %v", dep.Spec.Replicas)
		}
	case keda:
		so := find[scaledObject](t, objs, "ScaledObject", serverName)
		if has(objs, "HorizontalPodAutoscaler") || dep.Spec.Replicas != nil {
			t.Errorf("KEDA and an HPA, or fixed replicas %v", dep.Spec.Replicas)
		}
		tr := so.Spec.Triggers[0]
		if so.Spec.ScaleTargetRef.Name != serverName || tr.Type != "prometheus" || tr.Metadata["query"] == "" || tr.Metadata["threshold"] == "" || tr.Metadata["serverAddress"] == "" {
			t.Errorf("ScaledObject %+v", so.Spec)
		}
		checkScaleDown(t, so.Spec.Advanced.HorizontalPodAutoscalerConfig.Behavior, grace)
	default:
		hpa := find[autoscalingv2.HorizontalPodAutoscaler](t, objs, "HorizontalPodAutoscaler", serverName)
		if hpa.Spec.ScaleTargetRef.Name != serverName || dep.Spec.Replicas != nil {
			t.Errorf("HPA targets %s; Deployment replicas %v (the HPA owns them)", hpa.Spec.ScaleTargetRef.Name, dep.Spec.Replicas)
		}
		m := hpa.Spec.Metrics[0]
		if m.Type != autoscalingv2.PodsMetricSourceType || m.Pods.Target.Type != autoscalingv2.AverageValueMetricType {
			t.Errorf("HPA metric %+v", m)
		}
		cm := find[corev1.ConfigMap](t, objs, "ConfigMap", "kiln-adapter-rules")
		var rules struct {
			Rules []struct {
				SeriesQuery string `json:"seriesQuery"`
				Resources   struct {
					Overrides map[string]struct {
						Resource string `json:"resource"`
					} `json:"overrides"`
				} `json:"resources"`
				Name struct {
					Matches string `json:"matches"`
					As      string `json:"as"`
				} `json:"name"`
				MetricsQuery string `json:"metricsQuery"`
			} `json:"rules"`
		}
		if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &rules); err != nil {
			t.Fatalf("adapter rules: %v", err)
		}
		served := false
		for _, r := range rules.Rules {
			served = served || r.Name.As == m.Pods.Metric.Name
			if r.Resources.Overrides["pod"].Resource != "pod" || r.Resources.Overrides["namespace"].Resource != "namespace" {
				t.Errorf("adapter rule %s is not per pod: %+v", r.Name.As, r.Resources)
			}
		}
		if !served {
			t.Errorf("the HPA's metric %s is not among the adapter's rules", m.Pods.Metric.Name)
		}
		checkScaleDown(t, hpa.Spec.Behavior, grace)
	}

	// monitoring objects
	if !static {
		sm := find[monitoringv1.ServiceMonitor](t, objs, "ServiceMonitor", serverName)
		if sm.Spec.Endpoints[0].Port != "metrics" || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "metrics" }) {
			t.Errorf("ServiceMonitor scrapes port %q", sm.Spec.Endpoints[0].Port)
		}
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selects %s=%s, the Service has %q", k, v, svc.Labels[k])
			}
		}
		pr := find[monitoringv1.PrometheusRule](t, objs, "PrometheusRule", "kiln")
		var alerts []string
		for _, r := range pr.Spec.Groups[0].Rules {
			alerts = append(alerts, r.Alert)
		}
		for _, want := range []string{"KilnP99AboveSLO", "KilnQueueGrowing", "KilnGPUMemoryNearFull", "KilnModelUnavailable", "KilnHighErrorRate"} {
			if !slices.Contains(alerts, want) {
				t.Errorf("PrometheusRule lacks %s: %v", want, alerts)
			}
		}
		cm := find[corev1.ConfigMap](t, objs, "ConfigMap", "kiln-dashboard")
		if !json.Valid([]byte(cm.Data["kiln.json"])) {
			t.Errorf("the dashboard ConfigMap's kiln.json is not JSON")
		}
	} else if has(objs, "ServiceMonitor") || has(objs, "PrometheusRule") {
		t.Errorf("static: Prometheus Operator objects rendered")
	}

	// every query in the chart names metrics kiln exports
	for _, o := range objs {
		for _, q := range queries(o.raw) {
			checkMetricNames(t, o.source, q)
		}
	}
}

func checkScaleDown(t *testing.T, b *autoscalingv2.HorizontalPodAutoscalerBehavior, grace int64) {
	t.Helper()
	if b == nil || b.ScaleDown == nil || len(b.ScaleDown.Policies) != 1 {
		t.Fatalf("scale-down behavior %+v", b)
	}
	p := b.ScaleDown.Policies[0]
	if p.Type != autoscalingv2.PodsScalingPolicy || p.Value != 1 || int64(p.PeriodSeconds) != grace || *b.ScaleDown.StabilizationWindowSeconds < 60 {
		t.Errorf("scale-down %+v, window %d: want one pod per %d s (the pods' grace period)", p, *b.ScaleDown.StabilizationWindowSeconds, grace)
	}
}

// queryField finds PromQL in a rendered object: the rules' expr, the
// adapter's metricsQuery and seriesQuery, KEDA's query.
var queryField = regexp.MustCompile(`(?m)^\s*(?:expr|query|metricsQuery|seriesQuery):\s*(\|-?\s*\n(?:\s{8,}.*\n?)+|.+)$`)

func queries(raw []byte) []string {
	var out []string
	for _, m := range queryField.FindAllStringSubmatch(string(raw), -1) {
		out = append(out, m[1])
	}
	return out
}
