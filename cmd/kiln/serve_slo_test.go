package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestServeSLO (issue 14, item 7): a model with a latency objective
// (parameter slo_p99_ms) is batched by the SLO batcher and its requests are
// counted against the objective in the Prometheus metrics; a bad objective
// keeps the model from loading with an error that names the parameter, as
// do bad recording and INT8 rebuild parameters.
func TestServeSLO(t *testing.T) {
	slo := func(v string) string {
		return "max_batch_size: 8\nparameters { key: \"slo_p99_ms\" value: { string_value: \"" + v + "\" } }\n"
	}
	repo := writeRepo(t, map[string]string{
		"fast":     slo("60000"), // a minute: met on the busiest machine
		"bad":      slo("soon"),
		"negative": slo("-5"),
		"plain":    "max_batch_size: 8\n",
		"record":   "max_batch_size: 8\nparameters { key: \"record_requests\" value: { string_value: \"2\" } }\n",
		"rebuild":  "max_batch_size: 8\nparameters { key: \"int8_rebuild_after\" value: { string_value: \"10\" } }\n",
	})
	s := startServed(t, "--model-repository", repo, "--no-build")
	base := "http://" + s.http
	states := waitLoaded(t, base)
	for name, want := range map[string]string{"fast": "READY", "plain": "READY", "bad": "UNAVAILABLE", "negative": "UNAVAILABLE",
		"record": "UNAVAILABLE", "rebuild": "UNAVAILABLE"} {
		if states[name] != want {
			t.Errorf("model %s: %s, want %s", name, states[name], want)
		}
	}
	_, index := call(t, nil, "POST", base+"/v2/repository/index", "", nil)
	for _, want := range []string{`parameter slo_p99_ms: \"soon\"`, `parameter slo_p99_ms: \"-5\"`,
		`parameter record_requests: \"2\"`, `parameter int8_rebuild_after needs record_requests`} {
		if !strings.Contains(index, want) {
			t.Errorf("the index does not say %s: %s", want, index)
		}
	}
	for _, m := range []string{"fast", "plain"} {
		for range 5 {
			if code, body := call(t, nil, "POST", base+"/v2/models/"+m+"/infer", "", tinyRequest(1)); code != 200 {
				t.Fatalf("infer %s: %d %s", m, code, body)
			}
		}
	}
	_, metrics := call(t, nil, "GET", "http://"+s.metrics+"/metrics", "", nil)
	for _, tc := range []struct {
		line string
		want bool
	}{
		{`kiln_inference_slo_met_count{model="fast",version="1"} 5`, true},
		{`kiln_inference_slo_missed_count{model="fast",version="1"}`, false},
		{`kiln_inference_slo_met_count{model="plain"`, false},
	} {
		if got := strings.Contains(metrics, tc.line); got != tc.want {
			t.Errorf("metrics contain %s: %v, want %v", tc.line, got, tc.want)
		}
	}
	if t.Failed() {
		fmt.Println(metrics)
	}
}
