// Command pipeline is kiln serve's image pipeline example: it writes a
// model repository holding an image preprocessor (platform kiln_image:
// JPEG or PNG bytes in, a normalized FP32 [3,32,32] image out), tinycnn
// (the bundled classifier, with labels) and the ensemble image_classifier
// that chains them, makes sample images, and classifies images over HTTP
// (binary tensor data) or gRPC, printing each image's top classes (the
// classification extension).
//
//	go run ./examples/pipeline repo -out /tmp/pipeline-repo
//	kiln serve --model-repository /tmp/pipeline-repo
//	go run ./examples/pipeline image -out /tmp/red.png -color red
//	go run ./examples/pipeline classify -url http://localhost:8000 /tmp/red.png
//
// See README.md.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// Names of the pipeline's models and of the ensemble's input and output.
const (
	Ensemble   = "image_classifier"
	Preprocess = "preprocess"
	Classifier = "tinycnn"
	Input      = "IMAGE"
	Output     = "CLASSES"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  pipeline repo -out DIR
  pipeline image -out FILE.png|FILE.jpg [-color red|green|blue|gray] [-size 64]
  pipeline classify [-url http://localhost:8000 | -grpc localhost:8001] [-k 3] IMAGE...`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "repo":
		err = repoCmd(args[1:], stdout, stderr)
	case "image":
		err = imageCmd(args[1:], stdout, stderr)
	case "classify":
		err = classifyCmd(args[1:], stdout, stderr)
	default:
		usage(stderr)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "pipeline:", err)
		return 1
	}
	return 0
}

// Labels are tinycnn's class labels (CIFAR-10's), one a line.
const Labels = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n"

// Configs are the config.pbtxt of each model of the repository.
var Configs = map[string]string{
	Preprocess: `# JPEG or PNG bytes in, an RGB image resized to 32x32, scaled to [0,1]
# and normalized per channel, as tinycnn takes it (NCHW)
name: "preprocess"
platform: "kiln_image"
max_batch_size: 8
input [ { name: "image_bytes" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] } ]
parameters { key: "layout" value { string_value: "NCHW" } }
parameters { key: "color_order" value { string_value: "RGB" } }
parameters { key: "mean" value { string_value: "0.5,0.5,0.5" } }
parameters { key: "std" value { string_value: "0.25,0.25,0.25" } }
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
`,
	Classifier: `name: "tinycnn"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "image" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 32, 32 ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
`,
	Ensemble: `# encoded image -> preprocess -> tinycnn -> class scores; ask for the
# top classes with the classification extension (CLASSES takes tinycnn's
# labels)
name: "image_classifier"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "CLASSES" data_type: TYPE_FP32 dims: [ 10 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "preprocess"
      model_version: -1
      input_map { key: "image_bytes" value: "IMAGE" }
      output_map { key: "image" value: "preprocessed_image" }
    },
    {
      model_name: "tinycnn"
      model_version: -1
      input_map { key: "image" value: "preprocessed_image" }
      output_map { key: "probabilities" value: "CLASSES" }
    }
  ]
}
`,
}

// WriteRepository writes the three models under dir: each a folder with
// config.pbtxt and version folder 1 (tinycnn's with model.onnx, and
// labels.txt beside its config).
func WriteRepository(dir string) error {
	for name, cfg := range Configs {
		mdir := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(mdir, "1"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(mdir, "config.pbtxt"), []byte(cfg), 0o644); err != nil {
			return err
		}
	}
	cdir := filepath.Join(dir, Classifier)
	if err := os.WriteFile(filepath.Join(cdir, "1", "model.onnx"), examples.TinyCNNModel, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cdir, "labels.txt"), []byte(Labels), 0o644)
}

func repoCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("repo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "repository folder to write (created)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("repo: -out is required")
	}
	if err := WriteRepository(*out); err != nil {
		return err
	}
	for _, n := range []string{Preprocess, Classifier, Ensemble} {
		fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(*out, n))
	}
	return nil
}

// SampleImage returns a size x size image: a disc of color c on a
// gradient background.
func SampleImage(c color.RGBA, size int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	r2 := size * size / 9
	for y := range size {
		for x := range size {
			dx, dy := x-size/2, y-size/2
			if dx*dx+dy*dy < r2 {
				img.Set(x, y, c)
			} else {
				v := uint8(255 * (x + y) / (2 * size))
				img.Set(x, y, color.RGBA{v, v, v, 255})
			}
		}
	}
	return img
}

var colors = map[string]color.RGBA{
	"red": {220, 30, 30, 255}, "green": {30, 200, 40, 255}, "blue": {30, 40, 220, 255}, "gray": {128, 128, 128, 255},
}

// Encode encodes img as PNG or, when jpg, as JPEG (quality 90).
func Encode(img image.Image, jpg bool) ([]byte, error) {
	var b bytes.Buffer
	var err error
	if jpg {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	} else {
		err = png.Encode(&b, img)
	}
	return b.Bytes(), err
}

func imageCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "image file to write: .png, .jpg or .jpeg")
	col := fs.String("color", "red", "color of the disc: red, green, blue or gray")
	size := fs.Int("size", 64, "width and height in pixels")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, ok := colors[*col]
	if !ok || *out == "" || *size < 1 || *size > 4096 {
		return errors.New("image: want -out FILE, -color red|green|blue|gray and -size 1..4096")
	}
	ext := strings.ToLower(filepath.Ext(*out))
	if ext != ".png" && ext != ".jpg" && ext != ".jpeg" {
		return fmt.Errorf("image: %s: the name ends in .png, .jpg or .jpeg", *out)
	}
	b, err := Encode(SampleImage(c, *size), ext != ".png")
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes)\n", *out, len(b))
	return nil
}

func classifyCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("classify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://localhost:8000", "kiln serve's HTTP address")
	grpcAddr := fs.String("grpc", "", "kiln serve's gRPC address (host:port); used instead of -url when set")
	model := fs.String("model", Ensemble, "model to ask")
	k := fs.Int("k", 3, "top classes per image")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("classify: name one or more image files")
	}
	var imgs [][]byte
	for _, f := range fs.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		imgs = append(imgs, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		classes []string
		err     error
	)
	if *grpcAddr != "" {
		classes, err = ClassifyGRPC(ctx, *grpcAddr, *model, imgs, *k)
	} else {
		classes, err = ClassifyHTTP(ctx, *url, *model, imgs, *k)
	}
	if err != nil {
		return err
	}
	for i, f := range fs.Args() {
		fmt.Fprintf(stdout, "%s:", f)
		for _, c := range classes[i**k : (i+1)**k] {
			fmt.Fprintf(stdout, " %s", c)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// ClassifyHTTP sends the images as one batch to model over HTTP, the
// BYTES input as binary tensor data, and returns the top k classes of
// each image ("score:index:label"), image after image.
func ClassifyHTTP(ctx context.Context, url, model string, imgs [][]byte, k int) ([]string, error) {
	var raw bytes.Buffer
	for _, b := range imgs {
		binary.Write(&raw, binary.LittleEndian, uint32(len(b)))
		raw.Write(b)
	}
	hdr, err := json.Marshal(map[string]any{
		"inputs": []any{map[string]any{"name": Input, "datatype": "BYTES", "shape": []int{len(imgs), 1},
			"parameters": map[string]any{"binary_data_size": raw.Len()}}},
		"outputs": []any{map[string]any{"name": Output, "parameters": map[string]any{"classification": k}}},
	})
	if err != nil {
		return nil, err
	}
	body := append(hdr, raw.Bytes()...)
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(url, "/")+"/v2/models/"+model+"/infer", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(hdr)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var out struct {
		Outputs []struct {
			Name string   `json:"name"`
			Data []string `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	if len(out.Outputs) != 1 || len(out.Outputs[0].Data) != k*len(imgs) {
		return nil, fmt.Errorf("response: want %d classes of output %s: %s", k*len(imgs), Output, b)
	}
	return out.Outputs[0].Data, nil
}

// ClassifyGRPC is ClassifyHTTP over gRPC.
func ClassifyGRPC(ctx context.Context, addr, model string, imgs [][]byte, k int) ([]string, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	in := &tensor.Tensor{DType: tensor.String, Shape: []int{len(imgs), 1}}
	for _, b := range imgs {
		in.Strings = append(in.Strings, string(b))
	}
	req, err := api.NewInferRequest(model, map[string]*tensor.Tensor{Input: in})
	if err != nil {
		return nil, err
	}
	req.Outputs = []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: Output,
		Parameters: map[string]*inference.InferParameter{"classification": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: int64(k)}}}}}
	resp, err := inference.NewGRPCInferenceServiceClient(cc).ModelInfer(ctx, req)
	if err != nil {
		return nil, err
	}
	outs, err := api.ResponseTensors(resp)
	if err != nil {
		return nil, err
	}
	got := outs[Output]
	if got == nil || got.DType != tensor.String || len(got.Strings) != k*len(imgs) {
		return nil, fmt.Errorf("response: want %d classes of output %s, got %v", k*len(imgs), Output, got)
	}
	return got.Strings, nil
}
