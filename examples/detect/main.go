// Command detect is kiln serve's detection example: it makes a model
// repository holding yolo_tiny extended with non-maximum suppression
// (yolo_tiny_nms, whose outputs are the boxes themselves), and streams
// frames to it over the WebSocket inference stream, printing the boxes of
// each frame as they arrive.
//
//	go run ./examples/detect repo -model ../shared/models/yolo_tiny/model.onnx -out /tmp/detect-repo
//	kiln serve --model-repository /tmp/detect-repo
//	go run ./examples/detect stream -url http://localhost:8000 -frames 10
//
// See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/kilnai/kiln/onnx"
)

// ModelName is the name of the served detection model.
const ModelName = "yolo_tiny_nms"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  detect repo -model yolo_tiny/model.onnx -out DIR [-iou 0.45 -score 0.25 -max-per-class 100]
  detect stream [-url http://localhost:8000] [-model yolo_tiny_nms] [-frames 10] [-size 320] [-images DIR]`)
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
	case "stream":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		err = streamCmd(ctx, args[1:], stdout, stderr)
	default:
		usage(stderr)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "detect:", err)
		return 1
	}
	return 0
}

func repoCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("repo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := fs.String("model", "../shared/models/yolo_tiny/model.onnx", "YOLOv8-style detector (.onnx) to extend")
	out := fs.String("out", "", "repository folder to write (created)")
	p := DefaultParams
	fs.Func("iou", "IoU threshold (default 0.45)", floatFlag(&p.IoU))
	fs.Func("score", "score threshold (default 0.25)", floatFlag(&p.Score))
	fs.Int64Var(&p.MaxPerClass, "max-per-class", p.MaxPerClass, "most boxes kept per image and class")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("repo: -out is required")
	}
	if err := WriteRepository(*src, *out, p); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(*out, ModelName))
	return nil
}

func floatFlag(dst *float32) func(string) error {
	return func(s string) error {
		var v float64
		if _, err := fmt.Sscan(s, &v); err != nil {
			return err
		}
		*dst = float32(v)
		return nil
	}
}

// Config is the config.pbtxt of the detection model. A request may hold
// several images (batch_index tells their boxes apart), but requests are
// not batched together (max_batch_size 0), since the outputs have no batch
// dimension to split. Two instances, warmed up with a zero image before the
// model is ready.
const Config = `name: "yolo_tiny_nms"
max_batch_size: 0
input [ { name: "images" data_type: TYPE_FP32 dims: [ -1, 3, -1, -1 ] } ]
output [
  { name: "boxes" data_type: TYPE_FP32 dims: [ -1, 4 ] },
  { name: "scores" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "classes" data_type: TYPE_INT64 dims: [ -1 ] },
  { name: "batch_index" data_type: TYPE_INT64 dims: [ -1 ] }
]
instance_group [ { count: 2 kind: KIND_CPU } ]
model_warmup [ {
  name: "zero image"
  inputs { key: "images" value { data_type: TYPE_FP32 dims: [ 1, 3, 320, 320 ] zero_data: true } }
} ]
`

// WriteRepository reads the detector at src, adds NMS with p, and writes
// dir/yolo_tiny_nms/config.pbtxt and dir/yolo_tiny_nms/1/model.onnx.
func WriteRepository(src, dir string, p Params) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	m, err := onnx.DecodeModel(b)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	nm, err := AddNMS(m, p)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	mdir := filepath.Join(dir, ModelName)
	if err := os.MkdirAll(filepath.Join(mdir, "1"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mdir, "config.pbtxt"), []byte(Config), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(mdir, "1", "model.onnx"), nm.Marshal(), 0o644)
}

func streamCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://localhost:8000", "kiln serve HTTP address")
	model := fs.String("model", ModelName, "detection model to stream to")
	frames := fs.Int("frames", 10, "frames to send")
	size := fs.Int("size", 320, "frame height and width, for random frames")
	images := fs.String("images", "", "folder of frames as ONNX tensor files (*.pb, [1,3,H,W] float32); empty: random frames")
	token := fs.String("token", os.Getenv("KILN_INFER_TOKEN"), "bearer token for inference")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, err := NewFrames(*images, *size)
	if err != nil {
		return err
	}
	start := time.Now()
	n := 0
	err = Stream(ctx, *url, *model, *token, *frames, src, func(f FrameResult) error {
		n++
		fmt.Fprintf(stdout, "frame %d: %d boxes (%.1f ms)\n", f.Frame, len(f.Detections), f.Latency.Seconds()*1000)
		for _, d := range f.Detections {
			fmt.Fprintf(stdout, "  class %2d  score %.3f  box [%.3f %.3f %.3f %.3f]\n", d.Class, d.Score, d.Box[0], d.Box[1], d.Box[2], d.Box[3])
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d frames in %v\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}
