package repository

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/tensor"
)

var (
	// ErrNotFound is returned for a model that is not in the repository.
	ErrNotFound = errors.New("repository: model not found")
	// ErrNoVersion is returned when a model folder has no version to serve.
	ErrNoVersion = errors.New("repository: no model version")
	// ErrModel is returned when a model file fails to load or does not match
	// its config.
	ErrModel = errors.New("repository: bad model")
)

// DefaultMaxBatchSize is the max_batch_size given to a model without
// config.pbtxt whose inputs all have a symbolic first dimension.
const DefaultMaxBatchSize = 8

// Version is one loaded version of a model.
type Version struct {
	Number int64
	// Model is the version's loaded model file; nil for a model of a
	// native platform (NativePlatform), which the server runs itself.
	// For a model placed on several devices it is the first instance's.
	Model *kiln.Model
	// Instances are the version's execution contexts as the config's
	// instance groups place them, each with its device's model (Model
	// among them); nil for a model made in memory or of a native
	// platform, whose Config.Instances() instances all run Model.
	Instances []Instance
}

// models returns the distinct models of v.
func (v Version) models() []*kiln.Model {
	var out []*kiln.Model
	if v.Model != nil {
		out = append(out, v.Model)
	}
	for _, in := range v.Instances {
		if in.Model != nil && !slices.Contains(out, in.Model) {
			out = append(out, in.Model)
		}
	}
	return out
}

// Native platforms: models without a model file, run by the server.
const (
	// PlatformEnsemble is Triton's ensemble: a pipeline of other models
	// (ensemble_scheduling).
	PlatformEnsemble = "ensemble"
	// PlatformImage is kiln's image preprocessor: encoded images (BYTES,
	// JPEG or PNG) in, normalized FP32 [3,H,W] tensors out.
	PlatformImage = "kiln_image"
	// PlatformTokenizer is kiln's tokenizer: texts (BYTES) in, token ids
	// out (or ids in, texts out), from a HuggingFace tokenizer.json in the
	// version folder.
	PlatformTokenizer = "kiln_tokenizer"
)

// NativePlatform reports whether platform names a model the server runs
// itself, with no model file in its version folders.
func NativePlatform(platform string) bool {
	return platform == PlatformEnsemble || platform == PlatformImage || platform == PlatformTokenizer
}

// validateNative checks that a native model's config declares its inputs
// and outputs with their types (there is no model file to take them from).
func (c *Config) validateNative() error {
	if len(c.Inputs) == 0 {
		return fmt.Errorf("%w: input: %s models declare their inputs", ErrConfig, c.Platform)
	}
	if len(c.Outputs) == 0 {
		return fmt.Errorf("%w: output: %s models declare their outputs", ErrConfig, c.Platform)
	}
	for _, io := range append(append([]IO{}, c.Inputs...), c.Outputs...) {
		if io.DataType == tensor.Undefined {
			return fmt.Errorf("%w: %q: data_type is missing", ErrConfig, io.Name)
		}
	}
	if c.Platform == PlatformEnsemble && c.Raw == nil {
		return fmt.Errorf("%w: ensemble_scheduling: the config is not Triton's ModelConfig: %s", ErrConfig, strings.Join(c.Warnings, "; "))
	}
	if c.Platform == PlatformEnsemble && len(c.Raw.GetEnsembleScheduling().GetStep()) == 0 {
		return fmt.Errorf("%w: ensemble_scheduling: an ensemble has at least one step", ErrConfig)
	}
	return nil
}

// Model is a model read from the repository: its config and the versions its
// version policy selects, newest first.
type Model struct {
	Name string
	// Dir is the model folder ("" for a model made in memory); warmup data
	// files are read from Dir/warmup.
	Dir      string
	Config   *Config
	Versions []Version
	// Labels are the class labels of the outputs whose config names a
	// label_filename, one a line of the file, for the classification
	// extension.
	Labels map[string][]string
	// TempDir, when set, is a folder Close removes: the model folder written
	// from the files of a load request.
	TempDir string
}

// Close closes every version's model (and removes TempDir).
func (m *Model) Close() error {
	var errs []error
	for _, v := range m.Versions {
		for _, km := range v.models() {
			errs = append(errs, km.Close())
		}
	}
	if m.TempDir != "" {
		errs = append(errs, os.RemoveAll(m.TempDir))
	}
	return errors.Join(errs...)
}

// Names lists the model folders of the repository at dir, sorted.
func Names(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && e.Name()[0] != '.' {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Load reads the model folder dir/name: config.pbtxt when present, and the
// versions its version policy selects, each loaded with kiln.Load.
func Load(dir, name string) (*Model, error) { return LoadWith(dir, name, nil) }

// LoadWith is Load with each version's model file loaded by load (nil:
// kiln.Load).
func LoadWith(dir, name string, load ModelLoader) (*Model, error) {
	return LoadContext(context.Background(), dir, name, load)
}

// LoadContext is LoadWith given up between versions when ctx ends (the
// versions loaded so far are closed and the error wraps ctx's).
func LoadContext(ctx context.Context, dir, name string, load ModelLoader) (*Model, error) {
	return LoadOverride(ctx, dir, name, load, Override{})
}

// Override replaces what a load reads from the repository (Triton's
// load_model parameters).
type Override struct {
	// Config, when not nil, is used instead of the model folder's
	// config.pbtxt.
	Config *Config
	// Dir, when set, is the model folder to load from instead of the
	// repository's (a folder of files given with the load request).
	Dir string
}

// LoadOverride is LoadContext with o's config or model folder instead of
// the repository's.
func LoadOverride(ctx context.Context, dir, name string, load ModelLoader, o Override) (*Model, error) {
	if load == nil {
		load = func(path string, _ *Config) (*kiln.Model, error) { return kiln.Load(path) }
	}
	mdir := filepath.Join(dir, name)
	if o.Dir != "" {
		mdir = o.Dir
	}
	if st, err := os.Stat(mdir); err != nil || !st.IsDir() || name == "" || filepath.Base(name) != name {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	cfg := o.Config
	if cfg == nil {
		if b, err := os.ReadFile(filepath.Join(mdir, "config.pbtxt")); err == nil {
			if cfg, err = ParseConfig(string(b)); err != nil {
				return nil, fmt.Errorf("model %s: config.pbtxt: %w", name, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("repository: model %s: %w", name, err)
		}
	}
	if cfg != nil && cfg.Name != "" && cfg.Name != name {
		return nil, fmt.Errorf("%w: model %s: the config names it %q", ErrConfig, name, cfg.Name)
	}
	ents, err := os.ReadDir(mdir)
	if err != nil {
		return nil, fmt.Errorf("repository: model %s: %w", name, err)
	}
	var nums []int64
	for _, e := range ents {
		if n, err := strconv.ParseInt(e.Name(), 10, 64); err == nil && e.IsDir() && n >= 0 {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	slices.Reverse(nums)
	policy := VersionPolicy{Kind: "latest", NumVersions: 1}
	if cfg != nil {
		policy = cfg.VersionPolicy
	}
	nums = selectVersions(nums, policy)
	if len(nums) == 0 {
		return nil, fmt.Errorf("%w: model %s has no version folder the version policy selects", ErrNoVersion, name)
	}
	file := "model.onnx"
	if cfg != nil && cfg.DefaultModelFilename != "" {
		file = filepath.Base(cfg.DefaultModelFilename)
	}
	m := &Model{Name: name, Dir: mdir}
	if cfg != nil && NativePlatform(cfg.Platform) {
		// no model file: the server runs it (an ensemble, an image
		// preprocessor); its config declares every input and output
		for _, n := range nums {
			m.Versions = append(m.Versions, Version{Number: n})
		}
		if err := cfg.validateNative(); err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		m.Config = cfg
		if m.Labels, err = readLabels(mdir, m.Config); err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		return m, nil
	}
	var gpus []string
	if cfg.needsGPUs() {
		gpus, _ = VisibleGPUs() // nil without a driver: the build says what is missing
	}
	placed, err := Placement(name, cfg, gpus)
	if err != nil {
		return nil, err
	}
	for _, n := range nums {
		if err := ctx.Err(); err != nil {
			m.Close()
			return nil, fmt.Errorf("repository: model %s: loading canceled: %w", name, err)
		}
		ins, err := loadPlaced(filepath.Join(mdir, strconv.FormatInt(n, 10), file), cfg, load, placed)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("%w: model %s version %d: %w", ErrModel, name, n, err)
		}
		m.Versions = append(m.Versions, Version{Number: n, Model: ins[0].Model, Instances: ins})
	}
	if m.Config, err = Complete(name, cfg, m.Versions[0].Model); err != nil {
		m.Close()
		return nil, err
	}
	m.Config.resolveGPUs(placed)
	m.Config.completeGroups(placed)
	if m.Labels, err = readLabels(mdir, m.Config); err != nil {
		m.Close()
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	return m, nil
}

// MaxLabelFileBytes bounds a label file (label_filename).
const MaxLabelFileBytes = 16 << 20

// readLabels reads the label files the outputs of cfg name, from the model
// folder dir: one label a line, a trailing newline and carriage returns
// dropped. A missing or too large file is an error naming the field.
func readLabels(dir string, cfg *Config) (map[string][]string, error) {
	var out map[string][]string
	for _, o := range cfg.Outputs {
		if o.LabelFilename == "" {
			continue
		}
		if !filepath.IsLocal(o.LabelFilename) {
			return nil, fmt.Errorf("%w: output %q: label_filename %q must name a file inside the model folder", ErrConfig, o.Name, o.LabelFilename)
		}
		p := filepath.Join(dir, o.LabelFilename)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: output %q: label_filename: %w", ErrConfig, o.Name, err)
		}
		if !st.Mode().IsRegular() || st.Size() > MaxLabelFileBytes {
			return nil, fmt.Errorf("%w: output %q: label_filename %q is not a regular file of at most %d bytes", ErrConfig, o.Name, o.LabelFilename, MaxLabelFileBytes)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: output %q: label_filename: %w", ErrConfig, o.Name, err)
		}
		s := strings.TrimSuffix(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
		if out == nil {
			out = map[string][]string{}
		}
		out[o.Name] = strings.Split(s, "\n")
	}
	return out, nil
}

// FromBytes makes a one-version (version 1) model from ONNX bytes, with the
// config the model's inputs and outputs define.
func FromBytes(name string, onnx []byte) (*Model, error) {
	km, err := kiln.LoadBytes(onnx)
	if err != nil {
		return nil, fmt.Errorf("%w: model %s: %w", ErrModel, name, err)
	}
	cfg, err := Complete(name, nil, km)
	if err != nil {
		km.Close()
		return nil, err
	}
	return &Model{Name: name, Config: cfg, Versions: []Version{{Number: 1, Model: km}}}, nil
}

func selectVersions(desc []int64, p VersionPolicy) []int64 {
	switch p.Kind {
	case "all":
		return desc
	case "specific":
		var out []int64
		for _, n := range desc {
			if slices.Contains(p.Versions, n) {
				out = append(out, n)
			}
		}
		return out
	}
	return desc[:min(len(desc), max(p.NumVersions, 1))]
}

// Complete returns cfg (or a new config when cfg is nil) with the inputs and
// outputs the model defines filled in, and checks that declared ones exist
// with the model's types.
//
// As Triton's ONNX Runtime backend auto-completes a config (Triton's model
// configuration guide, "Default Max Batch Size and Dynamic Batcher"): when
// the config is completed from the model (no config, or one that does not
// list both its inputs and its outputs), every input and output has a
// variable first dimension, max_batch_size is above 1 and the config sets
// no scheduler (dynamic_batching, sequence_batching), dynamic batching is
// turned on with its defaults (dynamic_batching { }). A config that lists
// its inputs and outputs is taken as written.
func Complete(name string, cfg *Config, km *kiln.Model) (*Config, error) {
	ins, outs := km.Inputs(), km.Outputs()
	autoComplete := cfg == nil || len(cfg.Inputs) == 0 || len(cfg.Outputs) == 0
	// the protocols carry tensors only: a sequence or optional value may
	// flow inside the graph, never in or out of it
	for i, io := range append(append([]kiln.IOInfo{}, ins...), outs...) {
		if io.DType == tensor.Sequence || io.DType == tensor.Optional {
			what := "input"
			if i >= len(ins) {
				what = "output"
			}
			return nil, fmt.Errorf("%w: model %s: %s %q is a %v value; the KServe protocols carry only tensors, so a served model's inputs and outputs must be tensors (sequence and optional values may flow inside its graph)", ErrModel, name, what, io.Name, io.DType)
		}
	}
	if cfg == nil {
		cfg = &Config{Name: name, Platform: "onnxruntime_onnx", Parameters: map[string]string{},
			VersionPolicy: VersionPolicy{Kind: "latest", NumVersions: 1}}
		batch := len(ins) > 0
		for _, in := range ins {
			if len(in.Shape) == 0 || in.Shape[0] != -1 {
				batch = false
			}
		}
		if batch {
			cfg.MaxBatchSize = DefaultMaxBatchSize
		}
	}
	if cfg.Name == "" {
		cfg.Name = name
	}
	if cfg.MaxBatchSize > 0 {
		for _, in := range ins {
			if len(in.Shape) == 0 || in.Shape[0] != -1 && cfg.MaxBatchSize > 1 {
				return nil, fmt.Errorf("%w: model %s: max_batch_size %d needs a variable first dimension, but input %q has shape %v",
					ErrModel, name, cfg.MaxBatchSize, in.Name, in.Dims)
			}
		}
	}
	if autoComplete && cfg.MaxBatchSize > 1 && cfg.DynamicBatching == nil && cfg.Raw.GetSequenceBatching() == nil &&
		variableFirstDim(ins) && variableFirstDim(outs) {
		cfg.DynamicBatching = &DynamicBatching{}
	}
	var err error
	if cfg.Inputs, err = completeIO(name, "input", cfg.Inputs, ins, cfg.MaxBatchSize); err != nil {
		return nil, err
	}
	if cfg.Outputs, err = completeIO(name, "output", cfg.Outputs, outs, cfg.MaxBatchSize); err != nil {
		return nil, err
	}
	return cfg, nil
}

// variableFirstDim reports whether every one of ios has a variable (-1)
// first dimension, as a model that can be batched has.
func variableFirstDim(ios []kiln.IOInfo) bool {
	for _, io := range ios {
		if len(io.Shape) == 0 || io.Shape[0] != -1 {
			return false
		}
	}
	return true
}

func completeIO(model, kind string, declared []IO, actual []kiln.IOInfo, maxBatch int) ([]IO, error) {
	byName := map[string]kiln.IOInfo{}
	for _, a := range actual {
		byName[a.Name] = a
	}
	if len(declared) > 0 {
		for _, d := range declared {
			a, ok := byName[d.Name]
			if !ok {
				return nil, fmt.Errorf("%w: model %s: config %s %q is not in the model", ErrModel, model, kind, d.Name)
			}
			if d.DataType != a.DType {
				return nil, fmt.Errorf("%w: model %s: %s %q is %s in the config but %v in the model", ErrModel, model, kind, d.Name, TritonType(d.DataType), a.DType)
			}
		}
		return declared, nil
	}
	var out []IO
	for _, a := range actual {
		io := IO{Name: a.Name, DataType: a.DType}
		shape := a.Shape
		if maxBatch > 0 && len(shape) > 0 {
			shape = shape[1:]
		}
		for _, d := range shape {
			io.Dims = append(io.Dims, int64(d))
		}
		out = append(out, io)
	}
	return out, nil
}
