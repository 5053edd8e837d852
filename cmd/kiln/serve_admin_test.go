package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api/inference"
)

// TestServeInferTokenGuardsRepository (issue 9, item 1): with only
// --infer-token set, the repository API (which can load and unload models)
// is not left open: it takes the infer token, over HTTP and gRPC.
func TestServeInferTokenGuardsRepository(t *testing.T) {
	repo := writeRepo(t, map[string]string{"tinycnn": "max_batch_size: 4\n"})
	s := startServed(t, "--model-repository", repo, "--no-build", "--model-control-mode", "explicit",
		"--load-model", "tinycnn", "--infer-token", "secret", "--metrics-port", "-1")
	base := "http://" + s.http
	eventually(t, "ready", func() bool { c, _ := call(t, nil, "GET", base+"/v2/health/ready", "", nil); return c == 200 })

	for _, tt := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {"secret", 200}} {
		if c, body := call(t, nil, "POST", base+"/v2/repository/index", tt.token, nil); c != tt.want {
			t.Errorf("HTTP index with token %q: %d %s, want %d", tt.token, c, body, tt.want)
		}
	}
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := inference.NewGRPCInferenceServiceClient(conn)
	for _, tt := range []struct {
		token string
		want  codes.Code
	}{{"", codes.Unauthenticated}, {"wrong", codes.Unauthenticated}, {"secret", codes.OK}} {
		ctx := context.Background()
		if tt.token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tt.token)
		}
		_, err := cl.RepositoryModelUnload(ctx, &inference.RepositoryModelUnloadRequest{ModelName: "nosuchmodel"})
		got := status.Code(err)
		if tt.want == codes.OK {
			// authorized: the unload itself fails for the unknown model
			if got == codes.Unauthenticated {
				t.Errorf("gRPC unload with the infer token: %v", err)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("gRPC unload with token %q: %v, want %v", tt.token, err, tt.want)
		}
	}
}

// TestServeMemoryLimit (issue 9, item 4): a model whose arena at
// max_batch_size cannot fit --memory-limit is refused at load (the others
// serve, the process lives); under a limit it fits, a batch-1 request of a
// max_batch_size 32768 model runs in a batch-1 arena.
func TestServeMemoryLimit(t *testing.T) {
	huge := "max_batch_size: 32768\n"
	repo := writeRepo(t, map[string]string{"huge": huge, "small": "max_batch_size: 4\n"})
	s := startServed(t, "--model-repository", repo, "--memory-limit", "64M", "--grpc-port", "-1", "--metrics-port", "-1")
	base := "http://" + s.http
	eventually(t, "loaded", func() bool {
		c, body := call(t, nil, "POST", base+"/v2/repository/index", "", nil)
		return c == 200 && !strings.Contains(body, "LOADING")
	})
	_, index := call(t, nil, "POST", base+"/v2/repository/index", "", nil)
	if !strings.Contains(index, "UNAVAILABLE") || !strings.Contains(index, "memory limit") {
		t.Errorf("index = %s, want huge UNAVAILABLE for the memory limit", index)
	}
	body := tinyRequest(1)
	if c, out := call(t, nil, "POST", base+"/v2/models/small/infer", "", body); c != 200 {
		t.Errorf("small: %d %s", c, out)
	}

	repo2 := writeRepo(t, map[string]string{"huge": huge})
	s2 := startServed(t, "--model-repository", repo2, "--memory-limit", "4G", "--grpc-port", "-1", "--metrics-port", "-1")
	base2 := "http://" + s2.http
	eventually(t, "ready", func() bool { c, _ := call(t, nil, "GET", base2+"/v2/health/ready", "", nil); return c == 200 })
	if c, out := call(t, nil, "POST", base2+"/v2/models/huge/infer", "", body); c != 200 {
		t.Errorf("batch 1 of a max_batch_size 32768 model: %d %s", c, out)
	}
}
