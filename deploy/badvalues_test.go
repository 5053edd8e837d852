package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChartRejectsBadValues renders values an operator may get wrong: the
// install fails with a message naming the value, and nothing renders.
func TestChartRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, values, want string
	}{
		{"autoscaler", "autoscaling:\n  type: vpa\n", `autoscaling.type "vpa": want hpa, keda or none`},
		{"metric", "autoscaling:\n  metric: cpu\n", `autoscaling.metric "cpu": want kiln_inflight_requests or kiln_queue_seconds_per_request`},
		{"exit timeout without unit", "server:\n  exitTimeout: 30\n", `"30" is not a duration of whole hours, minutes and seconds`},
		{"exit timeout in ms", "server:\n  exitTimeout: 500ms\n", `"500ms" is not a duration of whole hours, minutes and seconds`},
		{"gpus in words", "server:\n  gpus: two\n", `server.gpus "two": want a whole number of GPUs per pod (0: none)`},
		{"negative gpus", "server:\n  gpus: -1\n", `server.gpus "-1": want a whole number of GPUs per pod (0: none)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(f, []byte(tc.values), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := render(f)
			if err == nil {
				t.Fatalf("rendered:\n%.300s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}
