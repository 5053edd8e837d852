package repository

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
)

// ErrConfig is returned for a config.pbtxt that parses but does not describe
// a valid model configuration.
var ErrConfig = errors.New("repository: bad model config")

// TimeoutAction is what the queue does with a request whose timeout expired.
type TimeoutAction int

// Timeout actions, as Triton's ModelQueuePolicy.TimeoutAction.
const (
	// Reject fails the request with a timeout error.
	Reject TimeoutAction = iota
	// Delay keeps the request but lets every request without an expired
	// timeout go first.
	Delay
)

// String returns the Triton spelling of a.
func (a TimeoutAction) String() string {
	if a == Delay {
		return "DELAY"
	}
	return "REJECT"
}

// QueuePolicy is Triton's ModelQueuePolicy.
type QueuePolicy struct {
	TimeoutAction              TimeoutAction
	DefaultTimeoutMicroseconds uint64
	AllowTimeoutOverride       bool
	// MaxQueueSize is the most requests waiting at this level; 0 means no limit.
	MaxQueueSize uint32
}

// DynamicBatching is Triton's ModelDynamicBatching.
type DynamicBatching struct {
	PreferredBatchSize        []int
	MaxQueueDelayMicroseconds uint64
	PreserveOrdering          bool
	// PriorityLevels is the number of levels (1 = highest); 0 means one level.
	PriorityLevels       uint64
	DefaultPriorityLevel uint64
	DefaultQueuePolicy   QueuePolicy
	// PriorityQueuePolicy overrides the queue policy of single levels.
	PriorityQueuePolicy map[uint64]QueuePolicy
}

// IO is one input or output of a model config.
type IO struct {
	Name     string
	DataType tensor.DType
	// Dims excludes the batch dimension when MaxBatchSize > 0; -1 is variable.
	Dims []int64
	// Optional marks an input that may be omitted.
	Optional bool
	// Format is an input's image layout hint: "", FORMAT_NONE, FORMAT_NHWC
	// or FORMAT_NCHW.
	Format string
	// LabelFilename names an output's label file in the model folder, one
	// class label a line, for the classification extension.
	LabelFilename string
}

// InstanceGroup is Triton's ModelInstanceGroup.
type InstanceGroup struct {
	Name  string
	Count int
	// Kind is KIND_AUTO, KIND_CPU, KIND_GPU or KIND_MODEL.
	Kind string
	GPUs []int
}

// VersionPolicy chooses which numbered versions of a model are served.
type VersionPolicy struct {
	// Kind is "latest", "all" or "specific".
	Kind        string
	NumVersions int
	Versions    []int64
}

// Config is a model configuration: Triton's ModelConfig, the fields kiln uses.
type Config struct {
	Name     string
	Platform string
	Backend  string
	// MaxBatchSize > 0 means inputs and outputs have an implicit first batch
	// dimension of at most this size, and requests may be batched.
	MaxBatchSize         int
	Inputs               []IO
	Outputs              []IO
	InstanceGroups       []InstanceGroup
	DynamicBatching      *DynamicBatching
	VersionPolicy        VersionPolicy
	DefaultModelFilename string
	Parameters           map[string]string
	// Warmup lists the model_warmup samples, run on load before a version
	// is ready.
	Warmup []Warmup
	// Warnings names the fields kiln read but does not support.
	Warnings []string
	// Raw is the config.pbtxt as Triton's ModelConfig message: every field
	// Triton knows as written, those kiln does not use included (nil for a
	// model without config.pbtxt). ModelConfig shows it completed with
	// kiln's view.
	Raw *inference.ModelConfig
}

// Instances returns the total number of instances the config asks for
// (DefaultCPUInstances when it asks for none): a KIND_GPU group's count on each GPU of its gpus list (a
// loaded model's config lists the GPUs a group without one was placed on).
func (c *Config) Instances() int {
	n := 0
	for _, g := range c.InstanceGroups {
		if g.Kind == "KIND_GPU" && len(g.GPUs) > 1 {
			n += g.Count * len(g.GPUs)
			continue
		}
		n += g.Count
	}
	if n <= 0 {
		return DefaultCPUInstances(c)
	}
	return n
}

var tritonTypes = map[string]tensor.DType{
	"TYPE_BOOL": tensor.Bool, "TYPE_UINT8": tensor.Uint8, "TYPE_UINT16": tensor.Uint16,
	"TYPE_UINT32": tensor.Uint32, "TYPE_UINT64": tensor.Uint64, "TYPE_INT8": tensor.Int8,
	"TYPE_INT16": tensor.Int16, "TYPE_INT32": tensor.Int32, "TYPE_INT64": tensor.Int64,
	"TYPE_FP16": tensor.Float16, "TYPE_FP32": tensor.Float32, "TYPE_FP64": tensor.Float64,
	"TYPE_STRING": tensor.String, "TYPE_BF16": tensor.BFloat16,
}

// TritonType returns the config spelling (TYPE_FP32) of dt.
func TritonType(dt tensor.DType) string {
	for k, v := range tritonTypes {
		if v == dt {
			return k
		}
	}
	return "TYPE_INVALID"
}

// mapper walks a Node, collecting warnings about unknown fields.
type mapper struct {
	warnings []string
}

func (m *mapper) unknown(path string, f *Field) {
	if tritonField(path + f.Name) {
		m.warnings = append(m.warnings, fmt.Sprintf("line %d: field %s%s is shown in the model config but kiln does not act on it", f.Line, path, f.Name))
		return
	}
	m.warnings = append(m.warnings, fmt.Sprintf("line %d: field %s%s is not a field of Triton's ModelConfig and is ignored", f.Line, path, f.Name))
}

// tritonField reports whether a dotted field path ("instance_group.kind",
// "parameters.value.string_value") names a field of Triton's ModelConfig.
func tritonField(path string) bool {
	md := (&inference.ModelConfig{}).ProtoReflect().Descriptor()
	segs := strings.Split(path, ".")
	for i := 0; i < len(segs); i++ {
		fd := md.Fields().ByName(protoreflect.Name(segs[i]))
		if fd == nil {
			return false
		}
		if i == len(segs)-1 {
			return true
		}
		if fd.IsMap() {
			// a map entry's key and value: "parameters.value.string_value"
			if i++; segs[i] == "key" {
				return i == len(segs)-1
			} else if segs[i] != "value" {
				return false
			}
			fd = fd.MapValue()
			if i == len(segs)-1 {
				return true
			}
		}
		if md = fd.Message(); md == nil {
			return false
		}
	}
	return false
}

func cfgErr(f *Field, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s: %s", ErrConfig, f.Line, f.Name, fmt.Sprintf(format, args...))
}

func wantMsg(f *Field) error {
	if f.Msg == nil {
		return cfgErr(f, "want a message { ... }")
	}
	return nil
}

func wantScalar(f *Field) error {
	if f.Msg != nil {
		return cfgErr(f, "want a value, not a message")
	}
	return nil
}

func nonNegInt(f *Field) (int64, error) {
	v, err := f.Int()
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, cfgErr(f, "must not be negative")
	}
	return v, nil
}

// ParseConfig parses a config.pbtxt. Fields kiln does not know are listed in
// Config.Warnings, not rejected.
func ParseConfig(src string) (*Config, error) {
	root, err := ParseText(src)
	if err != nil {
		return nil, err
	}
	m := &mapper{}
	ensembleLine := 0 // where ensemble_scheduling is, when it is
	seqLine := 0      // where sequence_batching is, when it is
	c := &Config{Parameters: map[string]string{}, VersionPolicy: VersionPolicy{Kind: "latest", NumVersions: 1}}
	for _, f := range root.Fields {
		var err error
		switch f.Name {
		case "name", "platform", "backend", "default_model_filename":
			var s string
			if s, err = f.Str(); err == nil {
				switch f.Name {
				case "name":
					c.Name = s
				case "platform":
					c.Platform = s
				case "backend":
					c.Backend = s
				default:
					c.DefaultModelFilename = s
				}
			}
		case "max_batch_size":
			var v int64
			if v, err = nonNegInt(f); err == nil {
				if v > 1<<20 {
					err = cfgErr(f, "%d is too large", v)
				}
				c.MaxBatchSize = int(v)
			}
		case "input", "output":
			var io IO
			if io, err = m.io(f); err == nil {
				if f.Name == "input" {
					c.Inputs = append(c.Inputs, io)
				} else {
					c.Outputs = append(c.Outputs, io)
				}
			}
		case "instance_group":
			var g InstanceGroup
			if g, err = m.instanceGroup(f); err == nil {
				c.InstanceGroups = append(c.InstanceGroups, g)
			}
		case "dynamic_batching":
			c.DynamicBatching, err = m.dynamicBatching(f)
		case "version_policy":
			c.VersionPolicy, err = m.versionPolicy(f)
		case "parameters":
			err = m.parameter(f, c.Parameters)
		case "ensemble_scheduling":
			// read from Raw, Triton's message (the server checks the steps)
			if err = wantMsg(f); err == nil {
				ensembleLine = f.Line
			}
		case "sequence_batching":
			// read from Raw, Triton's message (the server's sequence batcher)
			if err = wantMsg(f); err == nil {
				seqLine = f.Line
			}
		case "response_cache":
			// read from Raw, Triton's message (the server's response cache)
			err = wantMsg(f)
		case "model_warmup":
			var w Warmup
			if w, err = m.warmup(f); err == nil {
				c.Warmup = append(c.Warmup, w)
			}
		default:
			m.unknown("", f)
		}
		if err != nil {
			return nil, err
		}
	}
	if ensembleLine > 0 && c.Platform != PlatformEnsemble {
		m.warnings = append(m.warnings, fmt.Sprintf("line %d: field ensemble_scheduling is shown in the model config but kiln acts on it only with platform \"ensemble\"", ensembleLine))
	}
	c.Warnings = m.warnings
	if err := c.validate(); err != nil {
		return nil, err
	}
	raw := &inference.ModelConfig{}
	if err := (prototext.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(src), raw); err != nil {
		c.Warnings = append(c.Warnings, fmt.Sprintf("the model config shows only the fields kiln uses: %v", err))
	} else {
		c.Raw = raw
	}
	if seqLine > 0 && c.Raw == nil {
		return nil, fmt.Errorf("%w: line %d: sequence_batching: the config is not Triton's ModelConfig: %s", ErrConfig, seqLine, strings.Join(c.Warnings, "; "))
	}
	return c, nil
}

func (c *Config) validate() error {
	seen := map[string]bool{}
	for _, io := range append(append([]IO{}, c.Inputs...), c.Outputs...) {
		if io.Name == "" {
			return fmt.Errorf("%w: an input or output has no name", ErrConfig)
		}
		if seen[io.Name] {
			return fmt.Errorf("%w: %q is declared twice", ErrConfig, io.Name)
		}
		seen[io.Name] = true
		if f := io.LabelFilename; f != "" && (!filepath.IsLocal(f) || strings.ContainsRune(f, '\\')) {
			return fmt.Errorf("%w: output %q: label_filename %q must name a file inside the model folder", ErrConfig, io.Name, f)
		}
	}
	for _, w := range c.Warmup {
		if c.MaxBatchSize > 0 && w.BatchSize > c.MaxBatchSize {
			return fmt.Errorf("%w: model_warmup %q: batch_size %d above max_batch_size %d", ErrConfig, w.Name, w.BatchSize, c.MaxBatchSize)
		}
		if c.MaxBatchSize == 0 && w.BatchSize > 1 {
			return fmt.Errorf("%w: model_warmup %q: batch_size %d, but max_batch_size is 0", ErrConfig, w.Name, w.BatchSize)
		}
	}
	if db := c.DynamicBatching; db != nil {
		for _, p := range db.PreferredBatchSize {
			if p <= 0 || c.MaxBatchSize > 0 && p > c.MaxBatchSize {
				return fmt.Errorf("%w: preferred_batch_size %d outside 1..max_batch_size %d", ErrConfig, p, c.MaxBatchSize)
			}
		}
		if db.PriorityLevels > 1<<16 {
			return fmt.Errorf("%w: priority_levels %d is too large", ErrConfig, db.PriorityLevels)
		}
		if db.PriorityLevels > 0 && db.DefaultPriorityLevel > db.PriorityLevels {
			return fmt.Errorf("%w: default_priority_level %d > priority_levels %d", ErrConfig, db.DefaultPriorityLevel, db.PriorityLevels)
		}
		for lvl := range db.PriorityQueuePolicy {
			if lvl == 0 || lvl > db.PriorityLevels {
				return fmt.Errorf("%w: priority_queue_policy for level %d outside 1..%d", ErrConfig, lvl, db.PriorityLevels)
			}
		}
	}
	return nil
}

func (m *mapper) io(f *Field) (IO, error) {
	var io IO
	if err := wantMsg(f); err != nil {
		return io, err
	}
	for _, g := range f.Msg.Fields {
		var err error
		switch g.Name {
		case "name":
			io.Name, err = g.Str()
		case "data_type":
			var s string
			if s, err = g.Enum(); err == nil {
				dt, ok := tritonTypes[s]
				if !ok {
					err = cfgErr(g, "unknown data type %s", s)
				}
				io.DataType = dt
			}
		case "dims":
			var v int64
			if v, err = g.Int(); err == nil {
				if v < -1 {
					err = cfgErr(g, "dimension %d (want -1 or a size)", v)
				}
				io.Dims = append(io.Dims, v)
			}
		case "optional":
			io.Optional, err = g.Bool()
		case "format":
			if io.Format, err = g.Enum(); err == nil {
				if _, ok := inference.ModelInput_Format_value[io.Format]; !ok || f.Name != "input" {
					err = cfgErr(g, "unknown format %s (want FORMAT_NONE, FORMAT_NHWC or FORMAT_NCHW, on an input)", io.Format)
				}
			}
		case "label_filename":
			if io.LabelFilename, err = g.Str(); err == nil && f.Name != "output" {
				err = cfgErr(g, "only an output has a label file")
			}
		default:
			m.unknown(f.Name+".", g)
		}
		if err != nil {
			return io, err
		}
	}
	if len(io.Dims) > 64 {
		return io, cfgErr(f, "too many dims")
	}
	return io, nil
}

func (m *mapper) instanceGroup(f *Field) (InstanceGroup, error) {
	g := InstanceGroup{Count: 1, Kind: "KIND_AUTO"}
	if err := wantMsg(f); err != nil {
		return g, err
	}
	for _, h := range f.Msg.Fields {
		var err error
		switch h.Name {
		case "name":
			g.Name, err = h.Str()
		case "count":
			var v int64
			if v, err = nonNegInt(h); err == nil {
				if v > 1024 {
					err = cfgErr(h, "%d instances is too many", v)
				}
				g.Count = int(v)
			}
		case "kind":
			g.Kind, err = h.Enum()
			if err == nil && !strings.HasPrefix(g.Kind, "KIND_") {
				err = cfgErr(h, "unknown kind %s", g.Kind)
			}
		case "gpus":
			var v int64
			if v, err = nonNegInt(h); err == nil {
				g.GPUs = append(g.GPUs, int(v))
			}
		default:
			m.unknown("instance_group.", h)
		}
		if err != nil {
			return g, err
		}
	}
	return g, nil
}

func (m *mapper) queuePolicy(path string, f *Field) (QueuePolicy, error) {
	var q QueuePolicy
	if err := wantMsg(f); err != nil {
		return q, err
	}
	for _, g := range f.Msg.Fields {
		var err error
		switch g.Name {
		case "timeout_action":
			var s string
			if s, err = g.Enum(); err == nil {
				switch s {
				case "REJECT":
					q.TimeoutAction = Reject
				case "DELAY":
					q.TimeoutAction = Delay
				default:
					err = cfgErr(g, "unknown action %s (want REJECT or DELAY)", s)
				}
			}
		case "default_timeout_microseconds":
			var v int64
			v, err = nonNegInt(g)
			q.DefaultTimeoutMicroseconds = uint64(v)
		case "allow_timeout_override":
			q.AllowTimeoutOverride, err = g.Bool()
		case "max_queue_size":
			var v int64
			if v, err = nonNegInt(g); err == nil && v > 1<<31 {
				err = cfgErr(g, "too large")
			}
			q.MaxQueueSize = uint32(v)
		default:
			m.unknown(path, g)
		}
		if err != nil {
			return q, err
		}
	}
	return q, nil
}

func (m *mapper) dynamicBatching(f *Field) (*DynamicBatching, error) {
	if err := wantMsg(f); err != nil {
		return nil, err
	}
	db := &DynamicBatching{}
	for _, g := range f.Msg.Fields {
		var err error
		switch g.Name {
		case "preferred_batch_size":
			var v int64
			if v, err = nonNegInt(g); err == nil {
				db.PreferredBatchSize = append(db.PreferredBatchSize, int(min(v, 1<<30)))
			}
		case "max_queue_delay_microseconds":
			var v int64
			v, err = nonNegInt(g)
			db.MaxQueueDelayMicroseconds = uint64(v)
		case "preserve_ordering":
			db.PreserveOrdering, err = g.Bool()
		case "priority_levels":
			var v int64
			v, err = nonNegInt(g)
			db.PriorityLevels = uint64(v)
		case "default_priority_level":
			var v int64
			v, err = nonNegInt(g)
			db.DefaultPriorityLevel = uint64(v)
		case "default_queue_policy":
			db.DefaultQueuePolicy, err = m.queuePolicy("dynamic_batching.default_queue_policy.", g)
		case "priority_queue_policy":
			err = m.priorityPolicy(g, db)
		default:
			m.unknown("dynamic_batching.", g)
		}
		if err != nil {
			return nil, err
		}
	}
	return db, nil
}

// priorityPolicy reads one map entry: priority_queue_policy { key: 1 value { ... } }.
func (m *mapper) priorityPolicy(f *Field, db *DynamicBatching) error {
	if err := wantMsg(f); err != nil {
		return err
	}
	keys, vals := f.Msg.Get("key"), f.Msg.Get("value")
	if len(keys) != 1 || len(vals) != 1 {
		return cfgErr(f, "want one key and one value")
	}
	k, err := nonNegInt(keys[0])
	if err != nil {
		return err
	}
	q, err := m.queuePolicy("dynamic_batching.priority_queue_policy.value.", vals[0])
	if err != nil {
		return err
	}
	if db.PriorityQueuePolicy == nil {
		db.PriorityQueuePolicy = map[uint64]QueuePolicy{}
	}
	db.PriorityQueuePolicy[uint64(k)] = q
	return nil
}

func (m *mapper) versionPolicy(f *Field) (VersionPolicy, error) {
	vp := VersionPolicy{Kind: "latest", NumVersions: 1}
	if err := wantMsg(f); err != nil {
		return vp, err
	}
	if len(f.Msg.Fields) != 1 {
		return vp, cfgErr(f, "want exactly one of latest, all, specific")
	}
	g := f.Msg.Fields[0]
	if err := wantMsg(g); err != nil {
		return vp, err
	}
	switch g.Name {
	case "latest":
		vp.Kind = "latest"
		for _, h := range g.Msg.Fields {
			if h.Name != "num_versions" {
				m.unknown("version_policy.latest.", h)
				continue
			}
			v, err := nonNegInt(h)
			if err != nil {
				return vp, err
			}
			if v == 0 || v > 1<<20 {
				return vp, cfgErr(h, "want 1 or more")
			}
			vp.NumVersions = int(v)
		}
	case "all":
		vp.Kind = "all"
	case "specific":
		vp.Kind = "specific"
		for _, h := range g.Msg.Fields {
			if h.Name != "versions" {
				m.unknown("version_policy.specific.", h)
				continue
			}
			v, err := h.Int()
			if err != nil {
				return vp, err
			}
			vp.Versions = append(vp.Versions, v)
		}
	default:
		return vp, cfgErr(g, "unknown version policy (want latest, all or specific)")
	}
	return vp, nil
}

// parameter reads one map entry: parameters { key: "k" value { string_value: "v" } }.
func (m *mapper) parameter(f *Field, into map[string]string) error {
	if err := wantMsg(f); err != nil {
		return err
	}
	keys, vals := f.Msg.Get("key"), f.Msg.Get("value")
	if len(keys) != 1 || len(vals) != 1 {
		return cfgErr(f, "want one key and one value")
	}
	k, err := keys[0].Str()
	if err != nil {
		return err
	}
	if err := wantMsg(vals[0]); err != nil {
		return err
	}
	for _, g := range vals[0].Msg.Fields {
		if g.Name != "string_value" {
			m.unknown("parameters.value.", g)
			continue
		}
		if err := wantScalar(g); err != nil {
			return err
		}
		s, err := g.Str()
		if err != nil {
			return err
		}
		into[k] = s
	}
	return nil
}
