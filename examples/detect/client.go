package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// Detection is one detected object.
type Detection struct {
	// Image is the index of the image in the request's batch.
	Image int
	Class int
	Score float32
	// Box is x1, y1, x2, y2 in the model's input coordinates.
	Box [4]float32
}

// Detections reads the outputs of the NMS model into detections.
func Detections(out map[string]*tensor.Tensor) ([]Detection, error) {
	boxes, scores, classes, batch := out[OutBoxes], out[OutScores], out[OutClasses], out[OutBatch]
	if boxes == nil || scores == nil || classes == nil || batch == nil {
		return nil, fmt.Errorf("%w: outputs %s, %s, %s and %s expected", ErrModel, OutBoxes, OutScores, OutClasses, OutBatch)
	}
	k := scores.Len()
	if boxes.DType != tensor.Float32 || scores.DType != tensor.Float32 || classes.DType != tensor.Int64 || batch.DType != tensor.Int64 ||
		boxes.Len() != 4*k || classes.Len() != k || batch.Len() != k {
		return nil, fmt.Errorf("%w: outputs of mismatched types or sizes: %v %v %v %v", ErrModel, boxes, scores, classes, batch)
	}
	ds := make([]Detection, k)
	for i := range ds {
		ds[i] = Detection{Image: int(batch.Int64s()[i]), Class: int(classes.Int64s()[i]), Score: scores.Float32s()[i]}
		copy(ds[i].Box[:], boxes.Float32s()[4*i:])
	}
	return ds, nil
}

// Frames yields the frames to send.
type Frames interface {
	// Frame returns frame i, a float32 [1, 3, H, W] image.
	Frame(i int) (*tensor.Tensor, error)
}

type randomFrames struct{ size int }

// Frame returns a frame of pixels in [0, 1), the same for the same i.
func (r randomFrames) Frame(i int) (*tensor.Tensor, error) {
	rng := rand.New(rand.NewPCG(uint64(i), 2026))
	t := tensor.New(tensor.Float32, 1, 3, r.size, r.size)
	for j := range t.Float32s() {
		t.Float32s()[j] = rng.Float32()
	}
	return t, nil
}

type fileFrames struct{ files []string }

func (f fileFrames) Frame(i int) (*tensor.Tensor, error) {
	t, _, err := onnx.ReadTensorFile(f.files[i%len(f.files)])
	if err != nil {
		return nil, err
	}
	if t.DType != tensor.Float32 || t.Rank() != 4 || t.Shape[0] != 1 || t.Shape[1] != 3 {
		return nil, fmt.Errorf("%s: want a float32 [1,3,H,W] image, got %v %v", f.files[i%len(f.files)], t.DType, t.Shape)
	}
	return t, nil
}

// NewFrames returns the .pb tensor files under dir (searched recursively,
// in name order, cycled), or random size x size frames when dir is empty.
func NewFrames(dir string, size int) (Frames, error) {
	if dir == "" {
		if size < 32 || size > 4096 {
			return nil, fmt.Errorf("frame size %d: want 32..4096", size)
		}
		return randomFrames{size}, nil
	}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(p) == ".pb" && strings.HasPrefix(filepath.Base(p), "input_") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no input_*.pb tensor files under %s", dir)
	}
	slices.Sort(files)
	return fileFrames{files}, nil
}

// FrameResult is the answer for one frame.
type FrameResult struct {
	Frame      int
	Detections []Detection
	// Latency is the time from sending the frame to receiving its boxes.
	Latency time.Duration
}

// Stream sends n frames from src to model over the WebSocket stream of the
// server at base, and calls got with the boxes of each frame, in order, as
// they arrive (frames are sent while earlier answers are still on their
// way). token, when not empty, is sent as a bearer token.
func Stream(ctx context.Context, base, model, token string, n int, src Frames, got func(FrameResult) error) error {
	var hdr http.Header
	if token != "" {
		hdr = http.Header{"Authorization": {"Bearer " + token}}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := api.DialWebSocket(ctx, base, model, hdr, 0)
	if err != nil {
		return err
	}
	defer st.Close()
	sent := make(chan time.Time, n) // when each frame went out, in order
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			f, err := src.Frame(i)
			if err == nil {
				sent <- time.Now()
				err = st.Send(ctx, strconv.Itoa(i), map[string]*tensor.Tensor{"images": f})
			}
			if err != nil {
				sendErr <- fmt.Errorf("frame %d: %w", i, err)
				cancel()
				return
			}
		}
		sendErr <- nil
	}()
	for i := range n {
		id, out, err := st.Recv(ctx)
		if err != nil {
			select {
			case serr := <-sendErr:
				if serr != nil {
					return serr
				}
			default:
			}
			return fmt.Errorf("frame %d: %w", i, err)
		}
		if id != strconv.Itoa(i) {
			return fmt.Errorf("answer for frame %s arrived when frame %d was due", id, i)
		}
		ds, err := Detections(out)
		if err != nil {
			return fmt.Errorf("frame %d: %w", i, err)
		}
		if err := got(FrameResult{Frame: i, Detections: ds, Latency: time.Since(<-sent)}); err != nil {
			return err
		}
	}
	return <-sendErr
}
