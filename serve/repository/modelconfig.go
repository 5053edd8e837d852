package repository

import (
	"fmt"
	"regexp"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
)

// ModelConfig returns c as Triton's ModelConfig message: the config.pbtxt
// as written (Raw: every field Triton knows, those kiln does not use
// included), with the fields kiln uses as the server uses them (inputs and
// outputs completed from the model, defaults filled in). The HTTP and gRPC
// model configs are both this message.
func (c *Config) ModelConfig() *inference.ModelConfig {
	own := c.ownMessage()
	if c.Raw == nil {
		return own
	}
	out := proto.Clone(c.Raw).(*inference.ModelConfig)
	overlay(out.ProtoReflect(), own.ProtoReflect())
	return out
}

// ParseConfigJSON parses a model config in JSON, as Triton's load_model
// "config" parameter and the HTTP model config have it (the field names of
// config.pbtxt), and checks it as ParseConfig checks a config.pbtxt. A
// field Triton's ModelConfig has that kiln's does not carry, or a value of
// the wrong type, is an error that names it.
func ParseConfigJSON(b []byte) (*Config, error) {
	m := &inference.ModelConfig{}
	if err := protojson.Unmarshal(b, m); err != nil {
		// protojson names a field by its JSON name (maxBatchSize); the
		// config's own spelling is max_batch_size
		msg := jsonFieldName.ReplaceAllStringFunc(err.Error(), func(s string) string {
			if n, ok := protoNames()[s[len("field "):]]; ok {
				return "field " + n
			}
			return s
		})
		return nil, fmt.Errorf("%w: %s", ErrConfig, msg)
	}
	text, err := prototext.MarshalOptions{Multiline: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ParseConfig(string(text))
}

var jsonFieldName = regexp.MustCompile(`field [A-Za-z0-9_]+`)

// protoNames maps the JSON names of ModelConfig's fields (and its
// messages') to their names.
var protoNames = sync.OnceValue(func() map[string]string {
	names := map[string]string{}
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			if fd.JSONName() != string(fd.Name()) {
				names[fd.JSONName()] = string(fd.Name())
			}
			if m := fd.Message(); m != nil {
				walk(m)
			}
		}
	}
	walk((&inference.ModelConfig{}).ProtoReflect().Descriptor())
	return names
})

// overlay sets every field populated in src on dst: scalars replace,
// messages overlay recursively, maps entry by entry, and lists element by
// element when both have as many elements (else src's replaces dst's), so
// that what dst has beyond src (fields kiln does not use) stays.
func overlay(dst, src protoreflect.Message) {
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			dl, sl := dst.Get(fd).List(), v.List()
			if fd.Kind() != protoreflect.MessageKind || dl.Len() != sl.Len() {
				dst.Set(fd, v)
				return true
			}
			for i := range sl.Len() {
				overlay(dl.Get(i).Message(), sl.Get(i).Message())
			}
		case fd.IsMap():
			dm := dst.Mutable(fd).Map()
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Kind() == protoreflect.MessageKind && dm.Has(k) {
					overlay(dm.Mutable(k).Message(), mv.Message())
				} else {
					dm.Set(k, mv)
				}
				return true
			})
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			if dst.Has(fd) {
				overlay(dst.Mutable(fd).Message(), v.Message())
			} else {
				dst.Set(fd, v)
			}
		default:
			dst.Set(fd, v)
		}
		return true
	})
}

// ownMessage is c as a ModelConfig message, the fields kiln uses only.
func (c *Config) ownMessage() *inference.ModelConfig {
	dt := func(d tensor.DType) inference.DataType {
		t, _ := api.ConfigDataType(d) // TYPE_INVALID for a type configs cannot name
		return t
	}
	out := &inference.ModelConfig{Name: c.Name, Platform: c.Platform, Backend: c.Backend,
		MaxBatchSize: int32(c.MaxBatchSize), DefaultModelFilename: c.DefaultModelFilename}
	vp := &inference.ModelVersionPolicy{}
	switch c.VersionPolicy.Kind {
	case "all":
		vp.PolicyChoice = &inference.ModelVersionPolicy_All_{All: &inference.ModelVersionPolicy_All{}}
	case "specific":
		vp.PolicyChoice = &inference.ModelVersionPolicy_Specific_{Specific: &inference.ModelVersionPolicy_Specific{Versions: c.VersionPolicy.Versions}}
	default:
		vp.PolicyChoice = &inference.ModelVersionPolicy_Latest_{Latest: &inference.ModelVersionPolicy_Latest{NumVersions: uint32(max(c.VersionPolicy.NumVersions, 1))}}
	}
	out.VersionPolicy = vp
	for _, in := range c.Inputs {
		out.Input = append(out.Input, &inference.ModelInput{Name: in.Name, DataType: dt(in.DataType), Dims: in.Dims, Optional: in.Optional,
			Format: inference.ModelInput_Format(inference.ModelInput_Format_value[in.Format])})
	}
	for _, o := range c.Outputs {
		out.Output = append(out.Output, &inference.ModelOutput{Name: o.Name, DataType: dt(o.DataType), Dims: o.Dims, LabelFilename: o.LabelFilename})
	}
	for _, g := range c.InstanceGroups {
		ig := &inference.ModelInstanceGroup{Name: g.Name, Count: int32(g.Count), Kind: inference.ModelInstanceGroup_Kind(inference.ModelInstanceGroup_Kind_value[g.Kind])}
		for _, gpu := range g.GPUs {
			ig.Gpus = append(ig.Gpus, int32(gpu))
		}
		out.InstanceGroup = append(out.InstanceGroup, ig)
	}
	if db := c.DynamicBatching; db != nil {
		pol := func(p QueuePolicy) *inference.ModelQueuePolicy {
			return &inference.ModelQueuePolicy{TimeoutAction: inference.ModelQueuePolicy_TimeoutAction(p.TimeoutAction),
				DefaultTimeoutMicroseconds: p.DefaultTimeoutMicroseconds, AllowTimeoutOverride: p.AllowTimeoutOverride, MaxQueueSize: p.MaxQueueSize}
		}
		d := &inference.ModelDynamicBatching{MaxQueueDelayMicroseconds: db.MaxQueueDelayMicroseconds, PreserveOrdering: db.PreserveOrdering,
			PriorityLevels: uint32(db.PriorityLevels), DefaultPriorityLevel: uint32(db.DefaultPriorityLevel), DefaultQueuePolicy: pol(db.DefaultQueuePolicy)}
		for _, p := range db.PreferredBatchSize {
			d.PreferredBatchSize = append(d.PreferredBatchSize, int32(p))
		}
		if len(db.PriorityQueuePolicy) > 0 {
			d.PriorityQueuePolicy = map[uint32]*inference.ModelQueuePolicy{}
			for k, p := range db.PriorityQueuePolicy {
				d.PriorityQueuePolicy[uint32(k)] = pol(p)
			}
		}
		out.SchedulingChoice = &inference.ModelConfig_DynamicBatching{DynamicBatching: d}
	}
	if len(c.Parameters) > 0 {
		out.Parameters = map[string]*inference.ModelParameter{}
		for k, v := range c.Parameters {
			out.Parameters[k] = &inference.ModelParameter{StringValue: v}
		}
	}
	for _, w := range c.Warmup {
		mw := &inference.ModelWarmup{Name: w.Name, BatchSize: uint32(w.BatchSize), Count: uint32(w.Count), Inputs: map[string]*inference.ModelWarmup_Input{}}
		for k, in := range w.Inputs {
			wi := &inference.ModelWarmup_Input{DataType: dt(in.DataType), Dims: in.Dims}
			switch in.Source {
			case RandomData:
				wi.InputDataType = &inference.ModelWarmup_Input_RandomData{RandomData: true}
			case FileData:
				wi.InputDataType = &inference.ModelWarmup_Input_InputDataFile{InputDataFile: in.File}
			default:
				wi.InputDataType = &inference.ModelWarmup_Input_ZeroData{ZeroData: true}
			}
			mw.Inputs[k] = wi
		}
		out.ModelWarmup = append(out.ModelWarmup, mw)
	}
	return out
}
