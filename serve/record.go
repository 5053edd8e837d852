package serve

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/serve/record"
	"github.com/kilnai/kiln/serve/repository"
)

// Parameters of config.pbtxt that make the server record a model's requests
// (kiln's extension): a sampled, bounded set of them, kept under
// Options.RecordDir/<model>/<version> in the test_data_set_N layout that
// kiln build --int8 --calib-data reads, to calibrate INT8 on real traffic:
//
//	parameters { key: "record_requests" value: { string_value: "0.1" } }  # fraction of the requests, (0, 1]
//	parameters { key: "record_max_sets" value: { string_value: "200" } }  # requests kept (default 100)
//	parameters { key: "record_max_mb" value: { string_value: "64" } }     # their files in all (default 64)
const (
	ParamRecord        = "record_requests"
	ParamRecordMaxSets = "record_max_sets"
	ParamRecordMaxMB   = "record_max_mb"
)

// RecordDir returns the folder where version v of model keeps its recorded
// requests, under root (Options.RecordDir).
func RecordDir(root, model string, v int64) string {
	return filepath.Join(root, model, strconv.FormatInt(v, 10))
}

// newRecorder starts the recorder of one version of rm when its config asks
// for one (nil otherwise, and when the server has no RecordDir: then it
// logs why).
func (s *Server) newRecorder(rm *repository.Model, v int64, mod *kiln.Model) (*record.Recorder, error) {
	p := rm.Config.Parameters
	f, ok := p[ParamRecord]
	if !ok {
		return nil, nil
	}
	o := record.Options{Dir: RecordDir(s.opts.RecordDir, rm.Name, v), Logger: s.log}
	var err error
	if o.Fraction, err = strconv.ParseFloat(f, 64); err != nil || !(o.Fraction > 0 && o.Fraction <= 1) {
		return nil, fmt.Errorf("%w: model %s: parameter %s: %q (want the fraction of requests to record, above 0 and at most 1)", repository.ErrConfig, rm.Name, ParamRecord, f)
	}
	if n, ok := p[ParamRecordMaxSets]; ok {
		if o.MaxSets, err = strconv.Atoi(n); err != nil || o.MaxSets < 1 {
			return nil, fmt.Errorf("%w: model %s: parameter %s: %q (want a count above 0)", repository.ErrConfig, rm.Name, ParamRecordMaxSets, n)
		}
	}
	if n, ok := p[ParamRecordMaxMB]; ok {
		mb, err := strconv.ParseFloat(n, 64)
		if err != nil || !(mb > 0 && mb <= 1<<20) {
			return nil, fmt.Errorf("%w: model %s: parameter %s: %q (want megabytes above 0)", repository.ErrConfig, rm.Name, ParamRecordMaxMB, n)
		}
		o.MaxBytes = int64(mb * (1 << 20))
	}
	if s.opts.RecordDir == "" {
		s.log.Warn("the model asks to record its requests, but the server has no folder for them (kiln serve --record-dir)", "model", rm.Name)
		return nil, nil
	}
	for _, in := range mod.Inputs() {
		o.Inputs = append(o.Inputs, in.Name)
	}
	r, err := record.New(o)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", rm.Name, err)
	}
	s.log.Info("recording requests", "model", rm.Name, "version", v, "dir", o.Dir, "fraction", o.Fraction)
	return r, nil
}
