package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli/values"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Chart is what the loop takes from the rendered chart: the HPA, the
// prometheus-adapter rule of its metric, the server's command and drain, and
// the P99 SLO of the alert rules.
type Chart struct {
	HPA autoscalingv2.HorizontalPodAutoscalerSpec
	// Metric is the HPA's Pods metric; MetricsQuery the adapter's query for
	// it, with <<.LabelMatchers>> and <<.GroupBy>> still in.
	Metric, MetricsQuery string
	// ServerArgs is the server container's args (starting with "serve").
	ServerArgs []string
	// PreStop is the server's preStop sleep; Grace its
	// terminationGracePeriodSeconds.
	PreStop, Grace time.Duration
	// ScrapeInterval is the servers' ServiceMonitor interval.
	ScrapeInterval time.Duration
	// GatewayPolicy is the gateway's --policy.
	GatewayPolicy string
	// SLO is the P99 latency of the KilnP99AboveSLO alert.
	SLO time.Duration
}

// renderChart renders the chart as `helm template kiln DIR -n kiln -f
// FILE...` does, through the Helm SDK, and returns the manifest.
func renderChart(dir string, files ...string) (string, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return "", err
	}
	vals, err := (&values.Options{ValueFiles: files}).MergeValues(nil)
	if err != nil {
		return "", err
	}
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = "kiln"
	inst.Namespace = "kiln"
	inst.Replace = true
	if inst.KubeVersion, err = common.ParseKubeVersion("1.34.0"); err != nil {
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
	return rel.Manifest, nil
}

var sloExpr = regexp.MustCompile(`\)\s*>\s*([0-9.eE+-]+)\s*$`)

// loadChart renders the chart and reads the loop's parameters from it.
func loadChart(dir string, files ...string) (*Chart, error) {
	manifest, err := renderChart(dir, files...)
	if err != nil {
		return nil, err
	}
	c := &Chart{}
	var found struct{ hpa, adapter, server, monitor, rule, gateway bool }
	var adapterConfig string
	dec := scheme.Codecs.UniversalDeserializer()
	for _, doc := range strings.Split(manifest, "\n---\n") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, err
		}
		switch {
		case meta.Kind == "HorizontalPodAutoscaler":
			var h autoscalingv2.HorizontalPodAutoscaler
			if _, _, err := dec.Decode([]byte(doc), nil, &h); err != nil {
				return nil, fmt.Errorf("horizontalpodautoscaler %s: %w", meta.Metadata.Name, err)
			}
			c.HPA, found.hpa = h.Spec, true
		case meta.Kind == "ConfigMap" && meta.Metadata.Name == "kiln-adapter-rules":
			var cm corev1.ConfigMap
			if _, _, err := dec.Decode([]byte(doc), nil, &cm); err != nil {
				return nil, fmt.Errorf("configmap %s: %w", meta.Metadata.Name, err)
			}
			adapterConfig, found.adapter = cm.Data["config.yaml"], true
		case meta.Kind == "Deployment":
			var d appsv1.Deployment
			if _, _, err := dec.Decode([]byte(doc), nil, &d); err != nil {
				return nil, fmt.Errorf("deployment %s: %w", meta.Metadata.Name, err)
			}
			if len(d.Spec.Template.Spec.Containers) == 0 {
				return nil, fmt.Errorf("deployment %s has no container", meta.Metadata.Name)
			}
			ctr := d.Spec.Template.Spec.Containers[0]
			if meta.Metadata.Name == "kiln-gateway" {
				for _, a := range ctr.Args {
					if v, ok := strings.CutPrefix(a, "--policy="); ok {
						c.GatewayPolicy, found.gateway = v, true
					}
				}
				continue
			}
			c.ServerArgs, found.server = ctr.Args, true
			if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
				c.Grace = time.Duration(*g) * time.Second
			}
			if l := ctr.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
				c.PreStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
			}
		case meta.Kind == "ServiceMonitor" && meta.Metadata.Name == "kiln-server":
			var sm struct {
				Spec struct {
					Endpoints []struct {
						Interval string `json:"interval"`
					} `json:"endpoints"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal([]byte(doc), &sm); err != nil {
				return nil, err
			}
			if len(sm.Spec.Endpoints) > 0 {
				if c.ScrapeInterval, err = time.ParseDuration(sm.Spec.Endpoints[0].Interval); err != nil {
					return nil, fmt.Errorf("ServiceMonitor interval: %w", err)
				}
				found.monitor = true
			}
		case meta.Kind == "PrometheusRule":
			var pr struct {
				Spec struct {
					Groups []struct {
						Rules []struct {
							Alert string `json:"alert"`
							Expr  string `json:"expr"`
						} `json:"rules"`
					} `json:"groups"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal([]byte(doc), &pr); err != nil {
				return nil, err
			}
			for _, g := range pr.Spec.Groups {
				for _, r := range g.Rules {
					if r.Alert != "KilnP99AboveSLO" {
						continue
					}
					m := sloExpr.FindStringSubmatch(strings.TrimSpace(r.Expr))
					if m == nil {
						return nil, fmt.Errorf("KilnP99AboveSLO: no threshold in %q", r.Expr)
					}
					s, err := strconv.ParseFloat(m[1], 64)
					if err != nil {
						return nil, fmt.Errorf("KilnP99AboveSLO: %w", err)
					}
					c.SLO, found.rule = time.Duration(s*float64(time.Second)), true
				}
			}
		}
	}
	switch {
	case !found.hpa:
		return nil, fmt.Errorf("%s: the chart renders no HorizontalPodAutoscaler (autoscaling.type hpa)", dir)
	case !found.adapter:
		return nil, fmt.Errorf("%s: the chart renders no prometheus-adapter rules", dir)
	case !found.server || !found.gateway:
		return nil, fmt.Errorf("%s: the chart renders no server or no gateway Deployment", dir)
	case !found.monitor || !found.rule:
		return nil, fmt.Errorf("%s: the chart renders no ServiceMonitor or no KilnP99AboveSLO rule", dir)
	}
	if len(c.HPA.Metrics) != 1 || c.HPA.Metrics[0].Pods == nil {
		return nil, fmt.Errorf("the HPA has %d metrics: want one Pods metric", len(c.HPA.Metrics))
	}
	c.Metric = c.HPA.Metrics[0].Pods.Metric.Name
	var rules struct {
		Rules []struct {
			Name struct {
				As string `json:"as"`
			} `json:"name"`
			MetricsQuery string `json:"metricsQuery"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal([]byte(adapterConfig), &rules); err != nil {
		return nil, fmt.Errorf("adapter rules: %w", err)
	}
	for _, r := range rules.Rules {
		if r.Name.As == c.Metric {
			c.MetricsQuery = r.MetricsQuery
		}
	}
	if c.MetricsQuery == "" {
		return nil, fmt.Errorf("no prometheus-adapter rule serves %s", c.Metric)
	}
	return c, nil
}

// adapterQuery fills the adapter's template as prometheus-adapter does for
// the pods of a namespace: LabelMatchers selects them, GroupBy is pod.
func adapterQuery(tmpl, namespace string, pods []string) string {
	m := fmt.Sprintf(`namespace=%q,pod=~%q`, namespace, strings.Join(pods, "|"))
	return strings.NewReplacer("<<.LabelMatchers>>", m, "<<.GroupBy>>", "pod").Replace(tmpl)
}

// scaleRangeWindows divides the range windows of a PromQL query ([1m]) by f.
func scaleRangeWindows(q string, f float64) string {
	if f == 1 {
		return q
	}
	return rangeWindow.ReplaceAllStringFunc(q, func(s string) string {
		d, err := time.ParseDuration(s[1 : len(s)-1])
		if err != nil {
			return s
		}
		return "[" + promDuration(time.Duration(float64(d)/f)) + "]"
	})
}

var rangeWindow = regexp.MustCompile(`\[[0-9]+[smh]\]`)

// promDuration writes d in PromQL's units, to the millisecond.
func promDuration(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
