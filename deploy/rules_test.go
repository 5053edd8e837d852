package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const rulesFile = "prometheus/rules.yaml"

// TestPrometheusRules writes the rule groups of the chart's PrometheusRule
// (default values) as a Prometheus rules file, prometheus/rules.yaml (a
// golden file: -update rewrites it), and runs Debian's promtool on it:
// `promtool check rules` and the rule unit tests of prometheus/tests/
// (`promtool test rules`), which fire every alert on made-up series and
// leave it quiet on healthy ones.
func TestPrometheusRules(t *testing.T) {
	out, err := render()
	if err != nil {
		t.Fatal(err)
	}
	var spec []byte
	for _, o := range decode(t, out) {
		if o.kind != "PrometheusRule" {
			continue
		}
		var doc struct {
			Spec map[string]any `json:"spec"`
		}
		if err := yaml.Unmarshal(o.raw, &doc); err != nil {
			t.Fatal(err)
		}
		if spec, err = yaml.Marshal(doc.Spec); err != nil {
			t.Fatal(err)
		}
	}
	if spec == nil {
		t.Fatal("the default values render no PrometheusRule")
	}
	golden(t, rulesFile, append([]byte("# The chart's PrometheusRule (default values) as a rules file: go test ./deploy -run TestPrometheusRules -update\n"), spec...))

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: scripts/deps-deploy.sh installs it (Debian's prometheus package)")
	}
	if b, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", rulesFile, err, b)
	}
	tests, _ := filepath.Glob("prometheus/tests/*.yaml")
	if len(tests) == 0 {
		t.Fatal("no rule unit tests in prometheus/tests/")
	}
	b, err := exec.Command(promtool, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "SUCCESS") {
		t.Errorf("promtool test rules: %s", b)
	}
	t.Logf("promtool test rules %s:\n%s", strings.Join(tests, " "), b)
	if _, err := os.Stat(rulesFile); err != nil {
		t.Fatal(err)
	}
}

// TestQueriesParse has promtool parse every other PromQL query of the
// chart: the dashboard's panels, prometheus-adapter's metricsQuery (both
// metrics) and KEDA's trigger (both metrics), each as a recording rule of a
// scratch rules file, with the placeholders of Grafana and the adapter
// filled in as they would be.
func TestQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: scripts/deps-deploy.sh installs it (Debian's prometheus package)")
	}
	fill := strings.NewReplacer(
		"$__rate_interval", "1m", `"$namespace"`, `".*"`, `"$model"`, `".*"`,
		"<<.LabelMatchers>>", `namespace="kiln",pod=~"kiln-server-.*"`, "<<.GroupBy>>", "pod")
	type q struct{ where, expr string }
	var qs []q
	b, err := os.ReadFile("helm/kiln/dashboards/kiln.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, q{"dashboard panel " + p.Title, tg.Expr})
		}
	}
	for _, files := range [][]string{nil, {"examples/values-fetch.yaml"}, {"examples/values-keda.yaml"}, {"examples/values-keda.yaml", "examples/values-fetch.yaml"}} {
		out, err := render(files...)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range decode(t, out) {
			if o.kind == "ConfigMap" && strings.HasSuffix(o.name, "-adapter-rules") {
				var cm struct {
					Data map[string]string `json:"data"`
				}
				yaml.Unmarshal(o.raw, &cm)
				var rules struct {
					Rules []struct {
						MetricsQuery string `json:"metricsQuery"`
					} `json:"rules"`
				}
				if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &rules); err != nil {
					t.Fatal(err)
				}
				for _, r := range rules.Rules {
					qs = append(qs, q{"adapter rule", r.MetricsQuery})
				}
			}
			if so, ok := o.obj.(*scaledObject); ok {
				qs = append(qs, q{fmt.Sprintf("KEDA trigger (%v)", files), so.Spec.Triggers[0].Metadata["query"]})
			}
		}
	}
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for i, x := range qs {
		rules = append(rules, rule{fmt.Sprintf("kiln:query:%d", i), fill.Replace(x.expr)})
	}
	f := filepath.Join(t.TempDir(), "queries.yaml")
	b, err = yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "queries", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		// name the queries promtool refers to by their rule number
		for i, x := range qs {
			if strings.Contains(string(out), fmt.Sprintf("kiln:query:%d", i)) || strings.Contains(string(out), fmt.Sprintf("%d:", i+1)) {
				t.Logf("query %d, %s: %s", i, x.where, x.expr)
			}
		}
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if len(qs) < 15 {
		t.Errorf("only %d queries checked", len(qs))
	}
}
