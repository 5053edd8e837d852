package kiln

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/internal/version"
	"github.com/kilnai/kiln/onnx"
)

// PlanCache keeps built plans on disk, keyed by what a plan depends on: the
// model file's contents, the build options, the device fingerprint and the
// kiln version. A server restart then loads the cached plan instead of
// building again. Tactic timings are shared through one timing cache in the
// same folder.
type PlanCache struct {
	// Dir is the cache folder (created when missing).
	Dir string
	// MemoryLimit bounds the memory of each execution context of the
	// models the cache loads (see LoadOptions.MemoryLimit); 0 means the
	// default.
	MemoryLimit int64
}

// CacheResult says how Load got its model.
type CacheResult struct {
	// Path is the plan file in the cache.
	Path string
	// Hit is true when the plan came from the cache, false when it was
	// built (and written) now.
	Hit bool
	// Rebuilt holds why a cached plan could not be used, when it could
	// not (another device, a corrupt file, ...).
	Rebuilt string
}

// Load returns the model at path built with o, from the cache when a plan
// for the same model, options, device and kiln version is there (the key
// is in the file name and, checked on every hit, in the plan's header:
// a plan whose header has another key is rebuilt); otherwise
// it builds the model, writes the plan to the cache and loads it from
// there. A model file that is already a plan is loaded as it is.
func (c *PlanCache) Load(ctx context.Context, path string, o BuildOptions) (*Model, CacheResult, error) {
	if IsPlan(path) {
		m, err := LoadWith(path, c.loadOptions(o))
		return m, CacheResult{Path: path, Hit: true}, err
	}
	hash, err := c.key(path, o)
	if err != nil {
		return nil, CacheResult{}, fmt.Errorf("kiln: plan cache: %w", err)
	}
	key := planName(path) + "-" + hash
	res := CacheResult{Path: filepath.Join(c.Dir, key+".plan")}
	if m, lres, ok := c.loadLegacy(path, hash, res.Path, o); ok {
		return m, lres, nil
	}
	if _, err := os.Stat(res.Path); err == nil {
		// The file name says which key the plan is for; its header says
		// what it was built from. A plan copied or swapped in under the
		// name is never served.
		h, herr := plan.ReadHeader(res.Path)
		if herr == nil && h.BuildKey != key {
			got := h.BuildKey
			if got == "" {
				got = "none"
			}
			res.Rebuilt = fmt.Sprintf("the cached plan %s was built from another model or other options (its build key %s, this model's %s)", filepath.Base(res.Path), got, key)
		} else {
			m, err := LoadWith(res.Path, c.loadOptions(o))
			switch {
			case errors.Is(err, engine.ErrMemory):
				// a rebuild would not make it fit: the model is too
				// large for the memory limit as configured
				return nil, res, err
			case err != nil:
				res.Rebuilt = err.Error()
			case m.Plan().BuildKey != key: // changed since ReadHeader
				m.Close()
				res.Rebuilt = fmt.Sprintf("the cached plan %s was replaced while it was read", filepath.Base(res.Path))
			default:
				res.Hit = true
				return m, res, nil
			}
		}
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, res, fmt.Errorf("kiln: plan cache: %w", err)
	}
	if o.TimingCache == "" && !o.NoTiming {
		o.TimingCache = filepath.Join(c.Dir, "timing-cache.json")
		// the cache's own timing cache is a cache too: a damaged one (or one
		// of another format) is started anew rather than failing every build
		if _, err := tactic.Open(o.TimingCache); errors.Is(err, tactic.ErrCorrupt) || errors.Is(err, tactic.ErrVersion) {
			os.Remove(o.TimingCache)
		}
	}
	r, err := build.Build(ctx, path, o)
	if err != nil {
		return nil, res, fmt.Errorf("kiln: %w", err)
	}
	r.Header.BuildKey = key
	err = r.WriteFile(res.Path)
	r.Close()
	if err != nil {
		return nil, res, fmt.Errorf("kiln: plan cache: %w", err)
	}
	m, err := LoadWith(res.Path, c.loadOptions(o))
	return m, res, err
}

// planName is the name part of a cached plan's file name (NAME-KEY.plan):
// NAME for a model file NAME.onnx; for a file named model.onnx its
// folder's name, a numeric version folder skipped, so that a repository's
// <model>/<version>/model.onnx and a model's own folder <model>/model.onnx
// both give <model> (as kiln build names its plans).
func planName(path string) string {
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if name != "model" {
		return sanitize(name)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return name
	}
	dir := filepath.Dir(abs)
	if isVersion(filepath.Base(dir)) {
		dir = filepath.Dir(dir)
	}
	if d := filepath.Base(dir); d != "." && d != string(filepath.Separator) && d != "" {
		name = d
	}
	return sanitize(name)
}

// legacyPlanName is the name earlier kilns gave a cached plan: a
// model.onnx was named after the folder two above it, right for a
// repository's <model>/<version>/model.onnx only (../models/resnet/model.onnx
// was "models").
func legacyPlanName(path string) string {
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if name == "model" {
		name = filepath.Base(filepath.Dir(filepath.Dir(path)))
	}
	return sanitize(name)
}

// isVersion reports whether a folder name is a version number (digits).
func isVersion(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// loadLegacy loads the plan a cache of the old names holds for path (the
// same key under legacyPlanName) when the plan of the current name is not
// there: it depends on the same model, options, device and kiln version,
// and its header's build key is checked as on any hit. Any trouble with it
// (another key in its header, a damaged file) is a miss: the caller builds
// the plan under its current name, and the old file is left alone.
func (c *PlanCache) loadLegacy(path, hash, current string, o BuildOptions) (*Model, CacheResult, bool) {
	legacy := legacyPlanName(path) + "-" + hash
	p := filepath.Join(c.Dir, legacy+".plan")
	if p == current {
		return nil, CacheResult{}, false
	}
	if _, err := os.Stat(current); err == nil {
		return nil, CacheResult{}, false
	}
	if h, err := plan.ReadHeader(p); err != nil || h.BuildKey != legacy {
		return nil, CacheResult{}, false
	}
	m, err := LoadWith(p, c.loadOptions(o))
	if err != nil {
		return nil, CacheResult{}, false
	}
	if m.Plan().BuildKey != legacy {
		m.Close()
		return nil, CacheResult{}, false
	}
	return m, CacheResult{Path: p, Hit: true}, true
}

// loadOptions are the options of loading a plan built with bo, for its
// device (bo.Device: "", "cpu", "cuda" or "cuda:N", of bo.Devices): a plan
// of the cache may have been built on another GPU of the same
// fingerprint, and runs on bo.Device.
func (c *PlanCache) loadOptions(bo BuildOptions) LoadOptions {
	o := LoadOptions{MemoryLimit: c.MemoryLimit, Devices: bo.Devices}
	if dev := bo.Device; dev != "" && dev != "cpu" {
		o.Device = dev // "cuda" is "cuda:0"
	}
	return o
}

// key hashes what a plan depends on (the cached plan's name is
// planName(path)-key): the model file, the external data
// files it names (so that new weights beside an unchanged model.onnx are a
// miss), the options and the files they name (INT8 calibration data and
// cache), the device and the kiln version.
func (c *PlanCache) key(path string, o BuildOptions) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(data)
	// A model that does not decode is hashed as it is: the build reports
	// what is wrong with it.
	if mp, err := onnx.DecodeModel(data); err == nil {
		dir := filepath.Dir(path)
		for _, loc := range onnx.ExternalLocations(mp) {
			fmt.Fprintf(h, "\x00external %q\x00", loc)
			if err := hashFileIn(h, dir, loc); err != nil {
				fmt.Fprintf(h, "unreadable: %v", err) // the build says why
			}
		}
	}
	if o.CalibData != "" {
		fmt.Fprintf(h, "\x00calibration data\x00")
		if err := hashTree(h, o.CalibData); err != nil {
			fmt.Fprintf(h, "unreadable: %v", err)
		}
	}
	if o.CalibCache != "" && o.CalibData == "" { // with data, the cache is the build's output
		fmt.Fprintf(h, "\x00calibration cache\x00")
		if b, err := os.ReadFile(o.CalibCache); err == nil {
			h.Write(b)
		}
	}
	dev := o.Device
	if dev == "" {
		dev = "cpu"
	}
	d, ord, err := devices.Or(o.Devices).Lookup(dev)
	if err != nil {
		return "", err
	}
	fp, err := device.FingerprintAt(d, ord)
	if err != nil {
		return "", err
	}
	// The options that change the plan (not the log callbacks or where
	// the timing cache lives, nor which of several identical GPUs builds
	// it: the fingerprint says what the plan depends on, so that GPUs of
	// one fingerprint share one plan file and a GPU that differs has its
	// own).
	// fmt prints maps sorted, so equal options hash equally.
	o.Log, o.Progress, o.TimingCache, o.Devices = nil, nil, "", nil
	if strings.Contains(o.Device, ":") {
		o.Device = plan.DeviceBase(o.Device) // "cuda:1" hashes as "cuda" does
	}
	fmt.Fprintf(h, "\x00%+v\x00%s\x00%s", o, fp, version.Kiln)
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

// hashFileIn writes the contents of the file at name inside dir to h; a
// name that leaves dir is an error (the build refuses it too).
func hashFileIn(h io.Writer, dir, name string) error {
	if !filepath.IsLocal(name) {
		return fmt.Errorf("%q is not inside the model's folder", name)
	}
	f, err := os.OpenInRoot(dir, name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}

// hashTree writes the names and contents of the regular files under dir
// to h, in lexical order.
func hashTree(h io.Writer, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "\x00%q\x00", filepath.ToSlash(rel))
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(h, f)
		return err
	})
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
