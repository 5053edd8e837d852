package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
)

// TestServeTritonWording: what Triton's own example clients check besides
// the protocol, over HTTP and gRPC: the server's name (--server-name), an
// unknown model's error ("Request for unknown model"), a failed load's
// ("failed to load"), for a model the repository lacks and for a config
// override that does not parse.
func TestServeTritonWording(t *testing.T) {
	repo := t.TempDir()
	mdir := filepath.Join(repo, "classifier")
	os.MkdirAll(filepath.Join(mdir, "1"), 0o755)
	os.WriteFile(filepath.Join(mdir, "1", "model.onnx"), examples.TinyCNNModel, 0o644)
	os.WriteFile(filepath.Join(mdir, "config.pbtxt"), []byte("max_batch_size: 4\n"), 0o644)
	for _, tt := range []struct {
		args []string
		name string
	}{
		{nil, "kiln"},
		{[]string{"--server-name", "triton"}, "triton"},
	} {
		s := startServed(t, append([]string{"--model-repository", repo, "--model-control-mode", "explicit"}, tt.args...)...)
		base := "http://" + s.http
		code, body := call(t, nil, "GET", base+"/v2", "", nil)
		var meta struct{ Name string }
		if err := json.Unmarshal([]byte(body), &meta); code != 200 || err != nil || meta.Name != tt.name {
			t.Errorf("%q: GET /v2: %d %s, want name %q", tt.args, code, body, tt.name)
		}
		cc, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		client := inference.NewGRPCInferenceServiceClient(cc)
		ctx := context.Background()
		if m, err := client.ServerMetadata(ctx, &inference.ServerMetadataRequest{}); err != nil || m.GetName() != tt.name {
			t.Errorf("%q: gRPC ServerMetadata: %v %v, want name %q", tt.args, m, err, tt.name)
		}

		// HTTP answers {"error": "..."}; the clients read the message
		errOf := func(body string) string {
			var e struct{ Error string }
			json.Unmarshal([]byte(body), &e)
			return e.Error
		}
		for _, c := range []struct{ method, path, body, prefix string }{
			{"POST", "/v2/models/wrong_model_name/infer", `{"inputs":[]}`, "Request for unknown model: 'wrong_model_name' is not found"},
			{"GET", "/v2/models/wrong_model_name", "", "Request for unknown model"},
			{"POST", "/v2/repository/models/wrong_model_name/load", "", "failed to load 'wrong_model_name'"},
			{"POST", "/v2/repository/models/classifier/load", `{"parameters":{"config":"\"parameters\": {\"config\": {{\"max_batch_size\": \"16\"}}}"}}`, "failed to load 'classifier'"},
		} {
			code, body := call(t, nil, c.method, base+c.path, "", []byte(c.body))
			if code < 400 || !strings.HasPrefix(errOf(body), c.prefix) {
				t.Errorf("%s %s: %d %s, want an error starting %q", c.method, c.path, code, body, c.prefix)
			}
		}
		_, err = client.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "wrong_model_name"})
		if st, _ := status.FromError(err); !strings.HasPrefix(st.Message(), "Request for unknown model") {
			t.Errorf("gRPC infer of an unknown model: %v", err)
		}
		_, err = client.RepositoryModelLoad(ctx, &inference.RepositoryModelLoadRequest{ModelName: "wrong_model_name"})
		if st, _ := status.FromError(err); !strings.Contains(st.Message(), "failed to load") {
			t.Errorf("gRPC load of an unknown model: %v", err)
		}
		// a file name the file system refuses: Triton answers INTERNAL
		// "failed to poll from model repository" (its example checks
		// both), and the server lives on
		long := &inference.ModelRepositoryParameter{ParameterChoice: &inference.ModelRepositoryParameter_BytesParam{BytesParam: []byte("a")}}
		conf := &inference.ModelRepositoryParameter{ParameterChoice: &inference.ModelRepositoryParameter_StringParam{StringParam: "{}"}}
		_, err = client.RepositoryModelLoad(ctx, &inference.RepositoryModelLoadRequest{ModelName: "classifier",
			Parameters: map[string]*inference.ModelRepositoryParameter{"config": conf, "file:" + strings.Repeat("A", 256): long}})
		if st, _ := status.FromError(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "failed to poll from model repository") {
			t.Errorf("gRPC load with a file name too long: %v", err)
		}
		if live, err := client.ServerLive(ctx, &inference.ServerLiveRequest{}); err != nil || !live.GetLive() {
			t.Errorf("not live after the failed load: %v %v", live, err)
		}
		cc.Close()
	}
}
