package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"math"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/grpcapi"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/tensor"
)

// servePipeline writes the example repository with the command, serves it
// over HTTP and gRPC on loopback and returns the server and both
// addresses.
func servePipeline(t *testing.T) (*serve.Server, string, string) {
	t.Helper()
	repo := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"repo", "-out", repo}, &out, &errb); code != 0 {
		t.Fatalf("pipeline repo: exit %d: %s", code, errb.String())
	}
	s := serve.New(serve.Options{Repository: repo})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	if !s.Ready() {
		t.Fatal("server not ready after loading the repository")
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	t.Cleanup(ts.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	grpcapi.Register(g, s, true)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return s, ts.URL, lis.Addr().String()
}

// reference preprocesses img as the preprocess model's config says, by a
// different route: the test images are 64x64 and the model's 32x32, so
// each output pixel is the mean of a 2x2 block (bilinear with pixel
// centers aligned), then /255, -0.5, /0.25.
func reference(img image.Image) *tensor.Tensor {
	t := tensor.New(tensor.Float32, 1, 3, 32, 32)
	d := t.Float32s()
	for y := range 32 {
		for x := range 32 {
			var sum [3]float64
			for _, p := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
				c := color.NRGBAModel.Convert(img.At(2*x+p[0], 2*y+p[1])).(color.NRGBA)
				sum[0] += float64(c.R)
				sum[1] += float64(c.G)
				sum[2] += float64(c.B)
			}
			for c := range 3 {
				d[(c*32+y)*32+x] = float32((sum[c]/4/255 - 0.5) / 0.25)
			}
		}
	}
	return t
}

// topK returns the k best "score:index:label" classes of 10 scores.
func topK(scores []float32, k int) []string {
	labels := strings.Fields(Labels)
	idx := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return 0
	})
	var out []string
	for _, i := range idx[:k] {
		out = append(out, fmt.Sprintf("%s:%d:%s", strconv.FormatFloat(float64(scores[i]), 'f', 6, 64), i, labels[i]))
	}
	return out
}

// sameClasses reports whether got and want name the same classes in the
// same order with scores within tol.
func sameClasses(got, want []string, tol float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := strings.SplitN(got[i], ":", 2), strings.SplitN(want[i], ":", 2)
		if len(g) != 2 || len(w) != 2 || g[1] != w[1] {
			return false
		}
		gs, err1 := strconv.ParseFloat(g[0], 64)
		ws, err2 := strconv.ParseFloat(w[0], 64)
		if err1 != nil || err2 != nil || math.Abs(gs-ws) > tol {
			return false
		}
	}
	return true
}

// TestImageClassifier (issue 14, item 3) serves the example repository and
// classifies a PNG and a JPEG, one request each and both in one batch,
// over HTTP (binary data) and gRPC: the ensemble's top classes are those
// of tinycnn run on the images preprocessed by the test; the statistics
// count the ensemble and each step; a bad image is refused naming the
// input.
func TestImageClassifier(t *testing.T) {
	s, url, grpcAddr := servePipeline(t)
	direct, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	const k = 3
	type sample struct {
		name string
		data []byte
		want []string
	}
	var samples []sample
	for _, c := range []struct {
		name  string
		color string
		jpg   bool
	}{{"red.png", "red", false}, {"blue.jpg", "blue", true}} {
		b, err := Encode(SampleImage(colors[c.color], 64), c.jpg)
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := image.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		out, err := direct.Run(context.Background(), map[string]*tensor.Tensor{"image": reference(img)})
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, sample{c.name, b, topK(out["probabilities"].Float32s(), k)})
	}
	if slices.Equal(samples[0].want[:1], samples[1].want[:1]) {
		t.Logf("both images classify as %s", samples[0].want[0])
	}
	protocols := []struct {
		name     string
		classify func(imgs [][]byte) ([]string, error)
	}{
		{"HTTP", func(imgs [][]byte) ([]string, error) {
			return ClassifyHTTP(context.Background(), url, Ensemble, imgs, k)
		}},
		{"gRPC", func(imgs [][]byte) ([]string, error) {
			return ClassifyGRPC(context.Background(), grpcAddr, Ensemble, imgs, k)
		}},
	}
	requests := 0
	for _, p := range protocols {
		for _, smp := range samples {
			t.Run(p.name+" "+smp.name, func(t *testing.T) {
				got, err := p.classify([][]byte{smp.data})
				requests++
				if err != nil {
					t.Fatal(err)
				}
				// a JPEG's pixels may differ by a rounding between the
				// decoder's color conversions
				if !sameClasses(got, smp.want, 1e-4) {
					t.Errorf("got %q, want %q", got, smp.want)
				}
			})
		}
		t.Run(p.name+" batch", func(t *testing.T) {
			got, err := p.classify([][]byte{samples[0].data, samples[1].data})
			requests++
			if err != nil {
				t.Fatal(err)
			}
			if want := append(slices.Clone(samples[0].want), samples[1].want...); !sameClasses(got, want, 1e-4) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
		t.Run(p.name+" bad image", func(t *testing.T) {
			_, err := p.classify([][]byte{[]byte("not an image")})
			if err == nil || !strings.Contains(err.Error(), "image_bytes") || !strings.Contains(err.Error(), "preprocess") {
				t.Errorf("got %v, want an error naming the step's model and input", err)
			}
			if p.name == "HTTP" && !strings.Contains(fmt.Sprint(err), "HTTP 400") {
				t.Errorf("got %v, want HTTP 400", err)
			}
			if p.name == "gRPC" && !strings.Contains(fmt.Sprint(err), "InvalidArgument") {
				t.Errorf("got %v, want InvalidArgument", err)
			}
		})
	}
	t.Run("gRPC stream, config and statistics", func(t *testing.T) {
		ctx := context.Background()
		c, err := api.Dial(ctx, grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		st, err := c.Stream(ctx, Ensemble)
		if err != nil {
			t.Fatal(err)
		}
		for i, smp := range samples {
			in := &tensor.Tensor{DType: tensor.String, Shape: []int{1, 1}, Strings: []string{string(smp.data)}}
			if err := st.Send(map[string]*tensor.Tensor{Input: in}, api.WithID(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		st.CloseSend()
		for range samples {
			id, outs, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			i, _ := strconv.Atoi(id)
			requests++
			if o := outs[Output]; o == nil || !sameClasses(topK(o.Float32s(), k), samples[i].want, 1e-4) {
				t.Errorf("stream answer %s: %v, want %q", id, outs, samples[i].want)
			}
		}
		cfg, err := c.RPC().ModelConfig(ctx, &inference.ModelConfigRequest{Name: Ensemble})
		if err != nil {
			t.Fatal(err)
		}
		if steps := cfg.GetConfig().GetEnsembleScheduling().GetStep(); len(steps) != 2 || steps[1].GetModelName() != Classifier {
			t.Errorf("gRPC config: %v", cfg.GetConfig())
		}
		md, err := c.ModelMetadata(ctx, Ensemble, "")
		if err != nil || md.GetPlatform() != "ensemble" {
			t.Errorf("gRPC metadata: %v %v", md, err)
		}
	})

	stats, err := s.ModelStats("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		switch st.Model {
		case Ensemble, Classifier:
			if st.SuccessCount != uint64(requests) {
				t.Errorf("%s: %d successes, want %d", st.Model, st.SuccessCount, requests)
			}
		case Preprocess:
			if st.SuccessCount != uint64(requests) || st.FailCount != 2 {
				t.Errorf("%s: %d successes and %d failures, want %d and 2", st.Model, st.SuccessCount, st.FailCount, requests)
			}
		}
	}

	// the command prints each image's classes
	dir := t.TempDir()
	var files []string
	for _, smp := range samples {
		f := filepath.Join(dir, smp.name)
		os.WriteFile(f, smp.data, 0o644)
		files = append(files, f)
	}
	for _, args := range [][]string{{"-url", url}, {"-grpc", grpcAddr}} {
		var out, errb bytes.Buffer
		if code := run(append(append([]string{"classify"}, args...), files...), &out, &errb); code != 0 {
			t.Fatalf("classify %v: exit %d: %s", args, code, errb.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], files[0]+": ") || !strings.Contains(lines[1], strings.SplitN(samples[1].want[0], ":", 2)[1]) {
			t.Errorf("classify %v printed\n%s", args, out.String())
		}
	}
}
