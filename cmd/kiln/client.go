package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// stdOut is where kiln client prints its answers (tests replace it).
var stdOut io.Writer = os.Stdout

// clientCmd is "kiln client": a small KServe v2 gRPC client (api.Client)
// for trying a server from the command line: live, ready, metadata, infer.
func clientCmd(args []string) int {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	addr := fs.String("url", "localhost:8001", "the server's gRPC `address`, host:port")
	token := fs.String("token", "", "bearer token sent with every call (default: $KILN_INFER_TOKEN, or $KILN_ADMIN_TOKEN when that is empty)")
	caFile := fs.String("tls-ca", "", "connect with TLS, trusting the PEM certificates of this `file`")
	useTLS := fs.Bool("tls", false, "connect with TLS, trusting the system's certificates")
	data := fs.String("data", "", "infer: a `folder` of input_N.pb tensor files (default: random inputs)")
	shapes := shapeFlags{}
	fs.Var(shapes, "shape", "infer: shape of a random input, `name:1x3x224x224` (repeatable; default: the model's shape with variable dimensions 1)")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline of each call")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if len(pos) == 0 {
		return usageError(fs, "want live, ready, metadata or infer")
	}
	verb, rest := pos[0], pos[1:]
	switch {
	case (verb == "live") && len(rest) == 0:
	case (verb == "ready" || verb == "metadata") && len(rest) <= 1:
	case verb == "infer" && len(rest) == 1:
	case verb == "live" || verb == "ready" || verb == "metadata" || verb == "infer":
		return usageError(fs, "%s: wrong number of arguments %q", verb, rest)
	default:
		return usageError(fs, "unknown action %q: want live, ready, metadata or infer", verb)
	}
	if *token == "" {
		*token = os.Getenv("KILN_INFER_TOKEN")
	}
	if *token == "" {
		*token = os.Getenv("KILN_ADMIN_TOKEN")
	}
	var opts []grpc.DialOption
	if *useTLS || *caFile != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return fail("client: %v", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return fail("client: --tls-ca %s: no PEM certificate in it", *caFile)
			}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*token)
	}
	c, err := api.Dial(ctx, *addr, opts...)
	if err != nil {
		return fail("client: %v", err)
	}
	defer c.Close()
	model := ""
	if len(rest) == 1 {
		model = rest[0]
	}
	switch verb {
	case "live":
		ok, err := c.ServerLive(ctx)
		return answer(fmt.Sprintf("server live: %v", ok), ok, err)
	case "ready":
		if model == "" {
			ok, err := c.ServerReady(ctx)
			return answer(fmt.Sprintf("server ready: %v", ok), ok, err)
		}
		ok, err := c.ModelReady(ctx, model, "")
		return answer(fmt.Sprintf("model %s ready: %v", model, ok), ok, err)
	case "metadata":
		var b []byte
		var err error
		if model == "" {
			r, rerr := c.ServerMetadata(ctx)
			if rerr != nil {
				return fail("client: %v", rerr)
			}
			b, err = protojson.MarshalOptions{Multiline: true}.Marshal(r)
		} else {
			r, rerr := c.ModelMetadata(ctx, model, "")
			if rerr != nil {
				return fail("client: %v", rerr)
			}
			b, err = protojson.MarshalOptions{Multiline: true}.Marshal(r)
		}
		if err != nil {
			return fail("client: %v", err)
		}
		fmt.Fprintln(stdOut, string(b))
		return exitOK
	}
	// infer
	var inputs map[string]*tensor.Tensor
	if *data != "" {
		if len(shapes) > 0 {
			return fail("client: --shape and --data cannot be combined: the data sets the shapes")
		}
		inputs, err = readInputs(*data)
	} else {
		inputs, err = clientRandomInputs(ctx, c, model, shapes)
	}
	if err != nil {
		return fail("client: %v", err)
	}
	start := time.Now()
	out, err := c.Infer(ctx, model, inputs)
	if err != nil {
		return fail("client: %v", err)
	}
	fmt.Fprintf(stdOut, "%s answered in %.1f ms\n", model, float64(time.Since(start).Microseconds())/1e3)
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(stdOut, "output %s: %s\n", n, preview(out[n], 8))
	}
	return exitOK
}

// answer prints a yes/no answer: exit 0 for yes, 1 for no, 2 on error.
func answer(line string, ok bool, err error) int {
	if err != nil {
		return fail("client: %v", err)
	}
	fmt.Fprintln(stdOut, line)
	if !ok {
		return exitMismatch
	}
	return exitOK
}

// readInputs reads the input_N.pb files of a folder, named by the names
// stored in them.
func readInputs(dir string) (map[string]*tensor.Tensor, error) {
	files, err := filepath.Glob(filepath.Join(dir, "input_*.pb"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("--data %s: no input_N.pb files", dir)
	}
	in := map[string]*tensor.Tensor{}
	for _, f := range files {
		t, name, err := onnx.ReadTensorFile(f)
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, fmt.Errorf("%s: the tensor has no name (the model input it is for)", f)
		}
		in[name] = t
	}
	return in, nil
}

// clientRandomInputs makes random inputs for model from its metadata:
// floats in [0,1), integers 0 or 1; variable dimensions are 1 unless
// --shape gives the shape.
func clientRandomInputs(ctx context.Context, c *api.Client, model string, shapes shapeFlags) (map[string]*tensor.Tensor, error) {
	md, err := c.ModelMetadata(ctx, model, "")
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	in := map[string]*tensor.Tensor{}
	r := rand.New(rand.NewPCG(1, 2))
	for _, m := range md.GetInputs() {
		known[m.GetName()] = true
		dt, err := api.ParseDatatype(m.GetDatatype())
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", m.GetName(), err)
		}
		if dt == tensor.String {
			return nil, fmt.Errorf("input %s: random BYTES inputs are not supported: give --data", m.GetName())
		}
		shape, ok := shapes[m.GetName()]
		if !ok {
			for _, d := range m.GetShape() {
				shape = append(shape, int(max(d, 1)))
			}
		}
		t, err := tensor.Make(dt, shape)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", m.GetName(), err)
		}
		for i := range t.Len() {
			if dt.IsFloat() {
				t.SetFloat(i, r.Float64())
			} else {
				t.SetFloat(i, float64(r.IntN(2)))
			}
		}
		in[m.GetName()] = t
	}
	for n := range shapes {
		if !known[n] {
			return nil, fmt.Errorf("--shape %s: the model has no input %q", n, n)
		}
	}
	return in, nil
}

// preview is a tensor's type, shape and first n values.
func preview(t *tensor.Tensor, n int) string {
	var b strings.Builder
	dt, err := api.Datatype(t.DType)
	if err != nil {
		dt = t.DType.String()
	}
	fmt.Fprintf(&b, "%s %s", dt, tensor.ShapeString(t.Shape))
	if t.DType == tensor.String {
		return b.String()
	}
	for i := range min(n, t.Len()) {
		if t.DType.IsFloat() {
			fmt.Fprintf(&b, " %.4g", t.Float(i))
		} else {
			fmt.Fprintf(&b, " %d", t.Int(i))
		}
	}
	if t.Len() > n {
		b.WriteString(" ...")
	}
	return b.String()
}
