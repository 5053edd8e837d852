package grpcapi

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

// TestSharedModels serves the models of ../shared/models and checks that
// gRPC ModelInfer returns each model's reference outputs.
func TestSharedModels(t *testing.T) {
	src, _ := filepath.Abs("../../../shared/models")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Skipf("needs the reference models in ../shared/models: %v", err)
	}
	repo := t.TempDir()
	var names []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(src, e.Name(), "test_data_set_0")); err != nil {
			continue
		}
		os.MkdirAll(filepath.Join(repo, e.Name(), "1"), 0o755)
		if err := os.Symlink(filepath.Join(src, e.Name(), "model.onnx"), filepath.Join(repo, e.Name(), "1", "model.onnx")); err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		t.Skip("needs the reference models in ../shared/models")
	}
	s := serve.New(serve.Options{Repository: repo})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	Register(g, s, false)
	go g.Serve(lis)
	defer g.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := inference.NewGRPCInferenceServiceClient(cc)

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data := filepath.Join(src, name, "test_data_set_0")
			cfg, _, err := s.ModelConfig(name, "")
			if err != nil {
				t.Fatal(err)
			}
			inputs := map[string]*tensor.Tensor{}
			for i := range cfg.Inputs {
				x, _, err := kiln.ReadTensorFile(filepath.Join(data, fmt.Sprintf("input_%d.pb", i)))
				if err != nil {
					t.Fatal(err)
				}
				inputs[cfg.Inputs[i].Name] = x
			}
			req, err := api.NewInferRequest(name, inputs)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.ModelInfer(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := api.ResponseTensors(resp)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range cfg.Outputs {
				want, _, err := kiln.ReadTensorFile(filepath.Join(data, fmt.Sprintf("output_%d.pb", i)))
				if err != nil {
					break
				}
				gf, wf := got[o.Name].ToFloat32(), want.ToFloat32()
				if len(gf) != len(wf) {
					t.Fatalf("output %s: %d values, want %d", o.Name, len(gf), len(wf))
				}
				for j := range wf {
					if d := math.Abs(float64(gf[j] - wf[j])); d > 1e-4+1e-3*math.Abs(float64(wf[j])) {
						t.Fatalf("output %s[%d] = %v, want %v", o.Name, j, gf[j], wf[j])
					}
				}
			}
		})
	}
}
