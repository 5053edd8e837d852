package repository

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kilnai/kiln"
)

// ModelLoader loads the model file of one version, given the model's config
// (nil when the model folder has no config.pbtxt). The server's loader
// builds an engine through kiln's plan cache; nil means kiln.Load (the
// graph as it is).
type ModelLoader func(path string, cfg *Config) (*kiln.Model, error)

// ContextLoader is a ModelLoader given the context of the load, which ends
// when the load is given up (the server is told to stop).
type ContextLoader func(ctx context.Context, path string, cfg *Config) (*kiln.Model, error)

// Parameters of config.pbtxt that kiln reads to build a model's engine
// (kiln's extensions to Triton's config; Triton ignores unknown
// parameters):
//
//	parameters { key: "precision" value: { string_value: "fp16" } }        # fp32 (default), fp16, int8
//	parameters { key: "calibration_data" value: { string_value: "calib" } } # int8: folder in the model folder
//	parameters { key: "dims" value: { string_value: "seq=1,128,512" } }     # symbolic dimension ranges
//	parameters { key: "opt_level" value: { string_value: "2" } }
const (
	ParamPrecision       = "precision"
	ParamCalibrationData = "calibration_data"
	ParamDims            = "dims"
	ParamOptLevel        = "opt_level"
)

// BuildOptions derives the build options of a model's engine from its
// config: the device from instance_group (KIND_GPU on GPU N is "cuda:N"),
// the largest batch from max_batch_size (the profile's batch range is 1 to
// it; without batching the engine takes any shape), and precision, calibration data, dimension ranges and optimization
// level from the parameters above. modelDir is the model's folder.
func BuildOptions(modelDir string, cfg *Config) (kiln.BuildOptions, error) {
	o := kiln.BuildOptions{MaxBatch: 1}
	if cfg == nil {
		// Without a config, a model with a variable first dimension is
		// batched up to DefaultMaxBatchSize (see Complete).
		o.MaxBatch = DefaultMaxBatchSize
		return o, nil
	}
	if cfg.MaxBatchSize > 0 {
		o.MaxBatch = cfg.MaxBatchSize
	} else {
		// No batching: clients give whole shapes, which no profile limits.
		o.AnyShape = true
	}
	for _, g := range cfg.InstanceGroups {
		if g.Kind != "KIND_GPU" {
			continue
		}
		o.Device = "cuda"
		if len(g.GPUs) > 0 {
			o.Device = fmt.Sprintf("cuda:%d", g.GPUs[0])
		}
		break
	}
	p := cfg.Parameters
	switch prec := strings.ToLower(p[ParamPrecision]); prec {
	case "", "fp32":
	case "fp16", "int8":
		o.Precision = prec
	default:
		return o, fmt.Errorf("%w: parameter %s: %q (want fp32, fp16 or int8)", ErrConfig, ParamPrecision, p[ParamPrecision])
	}
	if d := p[ParamCalibrationData]; d != "" {
		if filepath.IsAbs(d) || strings.Contains(filepath.ToSlash(filepath.Clean(d)), "..") {
			return o, fmt.Errorf("%w: parameter %s must be a folder inside the model folder, got %q", ErrConfig, ParamCalibrationData, d)
		}
		o.CalibData = filepath.Join(modelDir, d)
	}
	if o.Precision == "int8" && o.CalibData == "" {
		return o, fmt.Errorf("%w: precision int8 needs parameter %s (a folder of input sets in the model folder)", ErrConfig, ParamCalibrationData)
	}
	if s := p[ParamDims]; s != "" {
		var err error
		if o.Dims, err = ParseDims(s); err != nil {
			return o, err
		}
	}
	if s := p[ParamOptLevel]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 5 {
			return o, fmt.Errorf("%w: parameter %s: %q (want 0..5)", ErrConfig, ParamOptLevel, s)
		}
		o.OptLevel, o.NoOptimization = n, n == 0
	}
	return o, nil
}

// DefaultMaxDim bounds each symbolic dimension (other than the batch
// dimension of a batched model) of an engine without optimization profiles
// (a model served without batching, or a graph served as it is), unless
// the dims parameter gives the dimension a range: the server refuses larger
// inputs before running them.
const DefaultMaxDim = 4096

// ParseDims parses the dims parameter: NAME=MIN,OPT,MAX items separated by
// ";", such as "seq=1,128,512; h=32,320,1280".
func ParseDims(s string) (map[string][3]int, error) {
	dims := map[string][3]int{}
	for _, item := range strings.Split(s, ";") {
		name, spec, ok := strings.Cut(strings.TrimSpace(item), "=")
		parts := strings.Split(spec, ",")
		if !ok || name == "" || len(parts) != 3 {
			return nil, fmt.Errorf("%w: parameter %s: %q: want NAME=MIN,OPT,MAX separated by ';'", ErrConfig, ParamDims, item)
		}
		var r [3]int
		for i, part := range parts {
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil {
				return nil, fmt.Errorf("%w: parameter %s: %q: bad number %q", ErrConfig, ParamDims, item, part)
			}
			r[i] = n
		}
		if r[0] < 0 || r[0] > r[1] || r[1] > r[2] {
			return nil, fmt.Errorf("%w: parameter %s: %q: want 0 <= MIN <= OPT <= MAX", ErrConfig, ParamDims, item)
		}
		dims[strings.TrimSpace(name)] = r
	}
	return dims, nil
}
