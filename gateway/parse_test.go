package gateway

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api/inference"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		want    Endpoint
		wantErr string
	}{
		{"127.0.0.1:8000", Endpoint{HTTP: "127.0.0.1:8000"}, ""},
		{"http=a:1,grpc=a:2,metrics=a:3", Endpoint{HTTP: "a:1", GRPC: "a:2", Metrics: "a:3"}, ""},
		{" grpc=a:2 , http=a:1 ", Endpoint{HTTP: "a:1", GRPC: "a:2"}, ""},
		{"", Endpoint{}, "empty backend"},
		{"grpc=a:2", Endpoint{}, "no http address"},
		{"http=a", Endpoint{}, "has no port"},
		{"http=a:1,admin=a:4", Endpoint{}, `unknown key "admin"`},
		{"http=a:1,grpc", Endpoint{}, "want KEY=HOST:PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseEndpoint(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrConfig) {
					t.Fatalf("ParseEndpoint(%q) = %v, %v; want an ErrConfig with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseEndpoint(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if again, _ := ParseEndpoint(got.String()); again != got {
				t.Errorf("String %q does not parse back: %+v", got.String(), again)
			}
		})
	}
}

func TestReadEndpoints(t *testing.T) {
	eps, err := ReadEndpoints([]byte("# backends\n127.0.0.1:1\n\nhttp=127.0.0.1:2,grpc=127.0.0.1:3 # second\n"))
	if err != nil || len(eps) != 2 || eps[1].GRPC != "127.0.0.1:3" {
		t.Fatalf("got %+v, %v", eps, err)
	}
	if _, err := ReadEndpoints([]byte("127.0.0.1:1\nnonsense\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad line: %v, want an error naming line 2", err)
	}
}

func TestParseModelPath(t *testing.T) {
	tests := []struct {
		path                   string
		model, version, action string
		ok                     bool
	}{
		{"/v2/models/m", "m", "", "", true},
		{"/v2/models/m/infer", "m", "", "infer", true},
		{"/v2/models/m/versions/2/infer", "m", "2", "infer", true},
		{"/v2/models/m/versions/2", "m", "2", "", true},
		{"/v2/models/m/stream", "m", "", "stream", true},
		{"/v2/models/", "", "", "", false},
		{"/v2/models/m/versions//infer", "", "", "", false},
		{"/v2/models/m/a/b", "", "", "", false},
		{"/v2/other", "", "", "", false},
	}
	for _, tt := range tests {
		m, v, a, ok := parseModelPath(tt.path)
		if m != tt.model || v != tt.version || a != tt.action || ok != tt.ok {
			t.Errorf("parseModelPath(%q) = %q %q %q %v; want %q %q %q %v", tt.path, m, v, a, ok, tt.model, tt.version, tt.action, tt.ok)
		}
	}
}

func TestHTTPSequence(t *testing.T) {
	tests := []struct {
		name, body, headerLen, want string
		end                         bool
	}{
		{"none", `{"inputs":[]}`, "", "", false},
		{"int", `{"parameters":{"sequence_id":42,"sequence_start":true},"inputs":[]}`, "", "s42", false},
		{"string", `{"parameters":{"sequence_id":"abc"},"inputs":[]}`, "", `s"abc"`, false},
		{"end", `{"parameters":{"sequence_id":3,"sequence_end":true},"inputs":[]}`, "", "s3", true},
		{"in a tensor name only", `{"inputs":[{"name":"sequence_id"}]}`, "", "", false},
		{"binary header", `{"parameters":{"sequence_id":7}}` + "\x00\x01\x02binary", "32", "s7", false},
		{"binary, in the data only", `{"inputs":[]}` + `"sequence_id"`, "13", "", false},
		{"bad header length", `{"parameters":{"sequence_id":7}}`, "999", "", false},
		{"not JSON", `"sequence_id" {`, "", "", false},
	}
	for _, tt := range tests {
		if got, end := httpSequence([]byte(tt.body), tt.headerLen); got != tt.want || end != tt.end {
			t.Errorf("%s: httpSequence = %q, %v; want %q, %v", tt.name, got, end, tt.want, tt.end)
		}
	}
}

func TestWireRoute(t *testing.T) {
	seq := &inference.ModelInferRequest{ModelName: "m", ModelVersion: "3", Id: "x",
		Parameters: map[string]*inference.InferParameter{
			"priority":    {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 1}},
			"sequence_id": {ParameterChoice: &inference.InferParameter_Uint64Param{Uint64Param: 99}}},
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "image", Datatype: "FP32", Shape: []int64{1}}},
		RawInputContents: [][]byte{make([]byte, 4096)}}
	b, _ := proto.Marshal(seq)
	rt, err := wireRoute(b, true)
	if err != nil || rt.model != "m" || rt.version != "3" || rt.seq == "" {
		t.Fatalf("wireRoute = %+v, %v", rt, err)
	}
	other := proto.Clone(seq).(*inference.ModelInferRequest)
	other.Parameters["sequence_id"] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_Uint64Param{Uint64Param: 100}}
	b2, _ := proto.Marshal(other)
	if rt2, _ := wireRoute(b2, true); rt2.seq == rt.seq || rt2.end {
		t.Errorf("sequences 99 and 100 have the same key %q (or an end)", rt.seq)
	}
	other.Parameters["sequence_end"] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: true}}
	b3, _ := proto.Marshal(other)
	if rt3, _ := wireRoute(b3, true); !rt3.end {
		t.Error("sequence_end true not seen")
	}
	ready, _ := proto.Marshal(&inference.ModelReadyRequest{Name: "r", Version: "1"})
	if rt, err := wireRoute(ready, false); err != nil || rt.model != "r" || rt.version != "1" {
		t.Errorf("ModelReadyRequest: %+v, %v", rt, err)
	}
	if _, err := wireRoute([]byte{0x0a, 0x50, 'x'}, true); err == nil {
		t.Error("a truncated message: no error")
	}
}

func TestPendingRequests(t *testing.T) {
	page := `# HELP nv_inference_pending_request_count Instantaneous number of pending requests
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="a",version="1"} 3
nv_inference_pending_request_count{model="b",version="1"} 4
nv_inference_pending_request_count_other 100
nv_inference_request_success{model="a",version="1"} 77
`
	n, err := pendingRequests(strings.NewReader(page))
	if err != nil || n != 7 {
		t.Fatalf("pendingRequests = %d, %v; want 7", n, err)
	}
}

func TestParseClientAndAdmission(t *testing.T) {
	for _, bad := range []string{"", "a", "a:", ":t", "a:t:fast", "a:t:1:0", "a:t:1:2:0", "a:t:1:2:x", "a:t:1:2:3:4"} {
		if _, err := ParseClient(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseClient(%q): %v, want ErrConfig", bad, err)
		}
	}
	if c, err := ParseClient("batch:tok:0::2"); err != nil || c.Priority != 2 || c.Rate != 0 {
		t.Errorf("ParseClient with a priority: %+v, %v", c, err)
	}
	alice, _ := ParseClient("alice:s3cret:1:2")
	bob, _ := ParseClient("bob:other")
	if _, err := newAdmission([]Client{alice, {Name: "eve", Token: "s3cret"}}); err == nil {
		t.Error("two clients with one token: no error")
	}
	a, err := newAdmission([]Client{alice, bob})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	steps := []struct {
		auth    string
		at      time.Duration
		want    error
		wantWho string
	}{
		{"", 0, ErrUnauthenticated, ""},
		{"Bearer nope", 0, ErrUnauthenticated, ""},
		{"s3cret", 0, ErrUnauthenticated, ""},
		{"Bearer s3cret", 0, nil, "alice"},
		{"Bearer s3cret", 0, nil, "alice"}, // burst of 2
		{"Bearer s3cret", 0, ErrRateLimited, "alice"},
		{"Bearer other", 0, nil, "bob"}, // no limit
		{"Bearer s3cret", 500 * time.Millisecond, ErrRateLimited, "alice"},
		{"Bearer s3cret", 1100 * time.Millisecond, nil, "alice"}, // one token back after a second
	}
	for i, s := range steps {
		who, err := a.admit(s.auth, now.Add(s.at))
		if !errors.Is(err, s.want) || (err == nil) != (s.want == nil) || who.Name != s.wantWho {
			t.Errorf("step %d (%q at %v): %q, %v; want %q, %v", i, s.auth, s.at, who.Name, err, s.wantWho, s.want)
		}
	}
	open, _ := newAdmission(nil)
	if _, err := open.admit("", now); err != nil {
		t.Errorf("no clients configured: %v", err)
	}
}

func TestRetryBudget(t *testing.T) {
	r := retryBudget{ratio: 0.5, min: 2}
	allowed := 0
	for range 10 {
		r.request()
	}
	for range 20 {
		if r.allow() {
			allowed++
		}
	}
	// Within one second: half of 10 requests (or of 10 + the previous
	// second's, when the second turned meanwhile); at least 2.
	if allowed < 2 || allowed > 10 {
		t.Errorf("%d retries allowed for 10 requests at ratio 0.5", allowed)
	}
}

func TestWithPriority(t *testing.T) {
	tests := []struct {
		name, body, headerLen string
		want, wantLen         string
	}{
		{"json", `{"inputs":[]}`, "", `{"parameters":{"priority":2},"inputs":[]}`, ""},
		{"spaces", ` { "inputs":[]}`, "", ` {"parameters":{"priority":2}, "inputs":[]}`, ""},
		{"empty object", `{}`, "", `{"parameters":{"priority":2}}`, ""},
		{"own priority", `{"parameters":{"priority":1},"inputs":[]}`, "", `{"parameters":{"priority":1},"inputs":[]}`, ""},
		{"own priority after other parameters", `{"inputs":[],"parameters":{"x":{"y":"}"},"priority":3}}`, "", `{"inputs":[],"parameters":{"x":{"y":"}"},"priority":3}}`, ""},
		{"other parameters", `{"parameters":{"sequence_id":3},"inputs":[]}`, "", `{"parameters":{"priority":2,"sequence_id":3},"inputs":[]}`, ""},
		{"empty parameters", `{"inputs":[],"parameters": { } }`, "", `{"inputs":[],"parameters": {"priority":2 } }`, ""},
		{"parameters of inputs and outputs only", `{"inputs":[{"name":"x","parameters":{"binary_data_size":4}}],"outputs":[{"name":"y","parameters":{"priority":9}}]}`, "",
			`{"parameters":{"priority":2},"inputs":[{"name":"x","parameters":{"binary_data_size":4}}],"outputs":[{"name":"y","parameters":{"priority":9}}]}`, ""},
		{"a string that mentions them", `{"id":"\"parameters\": {\"priority\":1} }","inputs":[]}`, "",
			`{"parameters":{"priority":2},"id":"\"parameters\": {\"priority\":1} }","inputs":[]}`, ""},
		{"binary", `{"inputs":[]}` + "\x00\x01", "13", `{"parameters":{"priority":2},"inputs":[]}` + "\x00\x01", "41"},
		{"binary with binary_data_size", `{"inputs":[{"parameters":{"binary_data_size":2}}]}` + "\x00\x01", "50",
			`{"parameters":{"priority":2},"inputs":[{"parameters":{"binary_data_size":2}}]}` + "\x00\x01", "78"},
		{"binary, own priority", `{"parameters":{"priority":1}}` + "{}", "28", `{"parameters":{"priority":1}}` + "{}", "28"},
		{"not an object", `[1]`, "", `[1]`, ""},
		{"parameters not an object", `{"parameters":null}`, "", `{"parameters":null}`, ""},
		{"cut short", `{"inputs":[{"name":"x"`, "", `{"inputs":[{"name":"x"`, ""},
		{"more after the object", `{"inputs":[]} {}`, "", `{"inputs":[]} {}`, ""},
		{"a bad header length", `{"inputs":[]}`, "99", `{"inputs":[]}`, "99"},
	}
	for _, tt := range tests {
		got, n := withPriority([]byte(tt.body), tt.headerLen, 2)
		if string(got) != tt.want || n != tt.wantLen {
			t.Errorf("%s: %q %q, want %q %q", tt.name, got, n, tt.want, tt.wantLen)
		}
	}
	req := &inference.ModelInferRequest{ModelName: "m", Parameters: map[string]*inference.InferParameter{
		"sequence_id": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 4}}}}
	b, _ := proto.Marshal(req)
	var back inference.ModelInferRequest
	if err := proto.Unmarshal(appendPriority(b, 3), &back); err != nil {
		t.Fatal(err)
	}
	if back.Parameters["priority"].GetInt64Param() != 3 || back.Parameters["sequence_id"].GetInt64Param() != 4 || back.ModelName != "m" {
		t.Errorf("appendPriority: %v", &back)
	}
}
