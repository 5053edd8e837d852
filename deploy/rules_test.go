package deploy

import (
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
